"""A finished run as the report and the claim checks see it (its ``results.json`` plus the
per-task ``compress/*`` figures of its ``metrics.csv``), and statistics over runs.

Imported by :mod:`cl_compress.report` (its load, tables and plots) and :mod:`cl_compress.report.claims`;
it imports none of them.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """One finished run: its results.json and the per-task ``compress/*`` figures."""

    path: Path
    res: dict[str, Any]
    label: str = ""
    per_task: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    @classmethod
    def from_results(cls, res: dict[str, Any], label: str = "", path: str | Path = ".") -> Run:
        """A run from an in-memory results dict (what ``build_and_run`` returns); the per-task
        figures are read from ``path/metrics.csv`` when it exists."""
        path = Path(path)
        return cls(path, res, label or res.get("strategy", ""), read_per_task(path / "metrics.csv"))

    @property
    def strategy(self) -> str:
        return self.res["strategy"]

    @property
    def bench(self) -> str:
        return f"{self.res['benchmark']}-{self.res['scenario']}"

    @property
    def option(self) -> str:
        """The ``strategy`` option the run was launched as (a sweep's variant or preset
        option, e.g. ``lrpet-truncate``): the folder below ``<benchmark>-<scenario>/``; the
        strategy name when the path does not say."""
        parts = self.path.parts
        if self.bench in parts[:-1]:
            return parts[parts.index(self.bench) + 1]
        return self.strategy

    @property
    def config(self) -> dict[str, Any]:
        return self.res.get("strategy_config") or {}

    @property
    def budget(self) -> dict[str, Any] | None:
        """The work the run did (results.json ``budget``: optimiser steps, epochs, samples per
        phase and task); ``None`` for runs written before it was recorded."""
        b = self.res.get("budget")
        return b if isinstance(b, dict) and "train_steps" in b else None

    def steps_per_task(self) -> list[float] | None:
        """Optimiser steps of ``Trainer.fit`` phases per task (``budget.per_task``; the total
        spread evenly when the per-task list is missing)."""
        b = self.budget
        if b is None:
            return None
        per = b.get("per_task") or []
        if per and all("train_steps" in p for p in per):
            return [float(p["train_steps"]) for p in per]
        n = int(self.res.get("n_tasks") or 1)
        return [b["train_steps"] / n] * n

    def extra_steps_per_task(self) -> list[float] | None:
        """Optimiser steps outside ``Trainer.fit`` (search, calibration ...) per task."""
        b = self.budget
        if b is None:
            return None
        per = b.get("per_task") or []
        if per:
            return [float(sum((p.get("extra_steps") or {}).values())) for p in per]
        n = int(self.res.get("n_tasks") or 1)
        return [sum((b.get("extra_steps") or {}).values()) / n] * n

    def flops_per_task(self) -> list[float] | None:
        """Forward FLOPs of one sample as the model answers each task (results.json
        ``inference.flops_per_task``); ``None`` for runs written before it was counted or
        where the counter failed (``inference.error``)."""
        inf = self.res.get("inference")
        per = inf.get("flops_per_task") if isinstance(inf, dict) else None
        if not per or not all(isinstance(v, int | float) for v in per):
            return None
        return [float(v) for v in per]

    def get(self, key: str) -> float | None:
        """A figure by dotted key (``compression.model_bytes``); derived: ``total_seconds``,
        ``budget.train_steps_per_task`` and ``budget.extra_steps_per_task`` (means over tasks),
        ``inference.flops_mean`` and ``inference.flops_last`` (FLOPs per sample: mean over
        tasks, last task)."""
        if key in ("inference.flops_mean", "inference.flops_last"):
            per = self.flops_per_task()
            return None if per is None else statistics.fmean(per) if key.endswith("mean") else per[-1]
        if key == "total_seconds":
            t = self.res.get("timing") or {}
            return sum(t.get("task_seconds") or [0.0]) + t.get("eval_seconds", 0.0)
        if key in ("budget.train_steps_per_task", "budget.extra_steps_per_task"):
            per = self.steps_per_task() if "train" in key else self.extra_steps_per_task()
            return statistics.fmean(per) if per else None
        v: Any = self.res
        for part in key.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def read_per_task(csv_path: Path) -> dict[str, dict[str, dict[int, float]]]:
    """``compress/<kind>/<name>`` rows of a run's metrics.csv as ``{kind: {name: {task: v}}}``
    (the last value wins, so a resumed run's repeated rows do not double count)."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    if not csv_path.is_file():
        return out
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            key, exp = row.get("key") or "", row.get("experience") or ""
            parts = key.split("/", 2)
            if len(parts) != 3 or parts[0] != "compress" or not exp:
                continue
            try:
                out.setdefault(parts[1], {}).setdefault(parts[2], {})[int(exp)] = float(row["value"])
            except ValueError:
                continue
    return out


def stat(runs: list[Run], key: str) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one run) and count of a figure over runs."""
    vals = [v for v in (r.get(key) for r in runs) if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)
