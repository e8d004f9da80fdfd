"""Load a sweep: every finished run below a directory, labelled by strategy variant and
grouped by benchmark. First stage of the report (load → tables / plots → write)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl_compress.report.runs import Run, read_per_task
from cl_compress.rundir.status import read_status

BASELINES = ("individual", "naive")


@dataclass
class Sweep:
    """Runs of a sweep grouped as ``groups[benchmark][label] -> runs`` (one per seed)."""

    root: Path
    runs: list[Run]
    incomplete: list[Path]
    meta: dict[str, Any]
    failed: dict[Path, str] = field(default_factory=dict)  # run dir -> error (status.json)

    @property
    def groups(self) -> dict[str, dict[str, list[Run]]]:
        out: dict[str, dict[str, list[Run]]] = {}
        for r in sorted(self.runs, key=lambda r: (r.bench, _order(r.label), r.res.get("seed", 0))):
            out.setdefault(r.bench, {}).setdefault(r.label, []).append(r)
        return out


def _order(label: str) -> tuple[int, str]:
    base = label.split("[")[0]
    return (BASELINES.index(base) if base in BASELINES else len(BASELINES), label)


def _default_config(strategy: str) -> dict[str, Any] | None:
    import dataclasses

    try:
        from cl_compress.strategies.registry import resolve_registered

        # a name read from results.json: registry and entry points only, never an import path
        return dataclasses.asdict(resolve_registered(strategy).Config())
    except Exception:  # unregistered or no longer importable: label by what varies
        return None


def assign_labels(runs: list[Run]) -> None:
    """Label each run as W&B and the terminal did (:func:`cl_compress.report.labels.method_label`:
    the strategy plus its categorical settings that differ from the defaults, or an explicit
    ``strategy.variant``). Runs under one label that still differ in a setting (a numeric
    sweep, e.g. two prune ratios) get those settings appended, so two settings never share
    a row (``packnet[prune_ratio=0.5]``)."""
    from cl_compress.report.labels import method_label

    by_label: dict[str, list[Run]] = {}
    for r in runs:
        explicit = ((r.res.get("config") or {}).get("strategy") or {}).get("variant")
        r.label = method_label(r.strategy, r.config, explicit)
        by_label.setdefault(r.label, []).append(r)
    for label, rs in by_label.items():
        # keys every run has (a key missing from some runs means another code version, not a variant)
        keys = sorted(set.intersection(*(set(r.config) for r in rs)))
        varying = [k for k in keys if len({json.dumps(r.config[k], sort_keys=True) for r in rs}) > 1]
        ref = _default_config(rs[0].strategy) or rs[0].config
        for r in rs:
            diff = [f"{k}={r.config.get(k)}" for k in varying if r.config.get(k) != ref.get(k)]
            if diff:
                inner = label[len(r.strategy) + 1:-1] if label != r.strategy else ""
                r.label = f"{r.strategy}[{','.join(([inner] if inner else []) + diff)}]"


def load_sweep(root: str | Path) -> Sweep:
    """Every run below ``root`` (a sweep directory, or any folder of run directories)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory {root} does not exist")
    runs, bad = [], {}
    for p in sorted(root.rglob("results.json")):
        try:
            res = json.loads(p.read_text())
        except (OSError, ValueError):
            bad[p.parent] = "results.json is unreadable (truncated or malformed)"
            continue
        if not (isinstance(res, dict) and "acc_matrix" in res and "strategy" in res):
            bad[p.parent] = "results.json is not a run's results"
            continue
        if not _finite(res.get("avg_acc", 0.0)) or not _finite(res.get("acc_matrix")):
            bad[p.parent] = "results.json holds non-finite accuracies (NaN/inf): not averaged in"
            continue
        runs.append(Run(p.parent, res, per_task=read_per_task(p.parent / "metrics.csv")))
    done = {r.path for r in runs}
    incomplete = sorted(({p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
                         | {p.parent for p in root.rglob("status.json")} | set(bad)) - done)
    failed = {}
    for p in incomplete:
        st = read_status(p) or {}
        if p in bad:
            failed[p] = bad[p]
        elif st.get("state") == "failed":
            failed[p] = str(st.get("error") or "unknown error")
    assign_labels(runs)
    meta_path = root / "sweep.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}")
    except (OSError, ValueError) as e:
        meta = {"notes": [f"{meta_path.name} is unreadable ({str(e)[:120]}): the sweep's date, "
                          "command and budget exceptions are unknown"]}
    return Sweep(root, runs, incomplete, meta, failed)


def _finite(v: Any) -> bool:
    """Whether ``v`` (a number or nested lists of numbers) holds only finite numbers."""
    import math

    if isinstance(v, list):
        return all(_finite(x) for x in v)
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


