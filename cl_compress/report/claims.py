"""Claim checks: the comparison report and every bench script (``experiments/bench_*.py``)
judge the papers' claims and the project's targets through this module, with one set of
thresholds (:data:`THRESHOLDS`). Each paper's check lives in its own module
(:mod:`cl_compress.report.papers`) and is looked up in the registry (:func:`check`,
:func:`claims`).

Every paper-claim verdict is one of ``supported``, ``partly supported``, ``not supported``,
``inconclusive`` (the difference is inside the seed noise, or one side has a single seed),
``not comparable`` (the runs did not get the same training steps or stored size, so no verdict
is drawn) or ``not measured`` (a strategy, variant or recorded figure the claim needs is
absent). Each claim prints its criterion and evidence, and the budget checks say whether the
strategies of a benchmark did the same work (optimiser steps per task, from each run's
results.json ``budget``).

==========================  =========  ==========================================================
threshold                   value      used for
==========================  =========  ==========================================================
``zero_forgetting``         0.001      PackNet: max forgetting and −BWT over seeds counted as none
``quant_drop_points``       2.0 pts    Ada-QPacknet: mean over tasks and seeds of the test accuracy
                                       of task t before quantisation minus right after it
``max_bits``                8          Ada-QPacknet: every task stored in at most this many bits
``cacl_ratio_share``        0.8        CACL supported from 80 % of the paper's ratio for the
                                       nearest number of tasks (:data:`CACL_REFERENCES`)
``cacl_ratio_partly``       1.5×       CACL partly supported from this ratio
``similar_points``          2.0 pts    "similar accuracy": at most this much lower (or the noise)
``noise_se``                2          a difference counts when above 2 standard errors
``min_seeds``               2          seeds per side needed for a noise estimate
``size_tolerance``          5 %        LRPET vs truncate: stored params equal within this share
``steps_tolerance``         0          budget: allowed relative difference of train steps/task
==========================  =========  ==========================================================

Project targets checked by the bench scripts (not paper claims): ``targets`` maps a name to its
limits (``min_ratio`` fewer stored params than ``individual``, ``max_points_below`` it; Ada-
QPacknet vs PackNet: ``max_points_gap``, ``max_code_bits``, ``min_bytes_ratio``).

Imports run one way: :mod:`cl_compress.report.runs` → :mod:`~cl_compress.report.claim_base` →
``report.papers.*`` → this module → :mod:`cl_compress.report`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cl_compress.report import papers  # noqa: F401  (registers the built-in claim checks)
from cl_compress.report.claim_base import (  # noqa: F401  (re-exported: the checks' shared API)
    CHECKS,
    THRESHOLDS,
    Claim,
    Groups,
    Thresholds,
    diff_points,
    groups_from_results,
    pick,
    register_claim,
    registered,
)
from cl_compress.report.runs import Run, stat


def check(strategy: str) -> Callable[..., Claim]:
    """The registered claim check of the paper behind ``strategy`` (``fn(groups, th)``)."""
    if strategy not in CHECKS:
        raise KeyError(f"no claim check registered for {strategy!r}; registered: {sorted(CHECKS)}")
    return CHECKS[strategy].check


# --- budgets --------------------------------------------------------------------------------------

@dataclass
class Budget:
    """Whether the strategies of one benchmark did the same training work."""

    verdict: str  # "equal", "unequal", "not measured"
    text: str
    steps: dict[str, list[float]]  # label -> mean train steps per task
    exceptions: dict[str, str]  # label -> reason (named by the sweep preset)


def _exception(label: str, runs: list[Run], exceptions: dict[str, str]) -> str | None:
    for key in (label, runs[0].option, runs[0].strategy):
        if key in exceptions:
            return exceptions[key]
    return None


def _fmt_steps(steps: list[float]) -> str:
    if len({round(s, 6) for s in steps}) == 1:
        return f"{steps[0]:g}/task"
    return "[" + ", ".join(f"{s:g}" for s in steps) + "]"


def budget_check(groups: Groups, exceptions: dict[str, str] | None = None,
                 th: Thresholds = THRESHOLDS) -> Budget:
    """Every run of one benchmark must have the same ``budget.train_steps`` per task (seeds of
    one label too), except the labels ``exceptions`` names (``{label, option or strategy:
    reason}``, a sweep's ``sweep.json`` ``budget_exceptions``), whose reason is printed."""
    exceptions = exceptions or {}
    missing = [lab for lab, rs in groups.items() if any(r.budget is None for r in rs)]
    named = {lab: reason for lab, rs in groups.items()
             if (reason := _exception(lab, rs, exceptions)) is not None}
    steps: dict[str, list[float]] = {}
    for lab, rs in groups.items():
        per = [r.steps_per_task() for r in rs if r.budget is not None]
        if per:
            T = min(len(p) for p in per if p is not None)
            steps[lab] = [statistics.fmean(p[t] for p in per if p is not None) for t in range(T)]
    notes = "".join(f"; `{lab}` differs on purpose: {why}" for lab, why in named.items())
    if missing:
        return Budget("not measured", "not measured: no `budget` (optimiser steps) in the results "
                      f"of {', '.join(f'`{m}`' for m in missing)} (written before it was recorded)"
                      + notes, steps, named)
    uneven = [lab for lab, rs in groups.items()
              if len({tuple(r.steps_per_task() or []) for r in rs}) > 1]
    compared = {lab: s for lab, s in steps.items() if lab not in named}
    ref = next(iter(compared.values()), None)

    def same(a: list[float], b: list[float]) -> bool:
        return len(a) == len(b) and all(
            abs(x - y) <= th.steps_tolerance * max(abs(x), abs(y)) for x, y in zip(a, b))

    differ = [lab for lab, s in compared.items() if ref is not None and not same(s, ref)]
    if differ or uneven:
        parts = ", ".join(f"`{lab}` {_fmt_steps(s)}" for lab, s in compared.items())
        text = f"**unequal** training steps per task: {parts}"
        if uneven:
            text += f"; seeds of {', '.join(f'`{u}`' for u in uneven)} differ among themselves"
        return Budget("unequal", text + notes, steps, named)
    text = (f"equal: {_fmt_steps(ref)} optimiser steps in training phases for every strategy"
            if ref is not None else "equal (every strategy is a named exception)")
    return Budget("equal", text + notes, steps, named)


def budget_table(groups: Groups) -> str:
    """Markdown: the training budget of every row (mean over seeds): mode, train steps per
    task, extra steps (search, calibration ...) per task, epochs and samples seen over the
    stream, and the steps of each phase of task 0."""
    lines = ["| strategy | budget mode | train steps/task | extra steps/task | train epochs (all tasks) | "
             "samples seen | phases (steps, task 0) |", "|---|---|---|---|---|---|---|"]
    for lab, rs in groups.items():
        bs = [r.budget for r in rs if r.budget is not None]
        if not bs:
            lines.append(f"| `{lab}` | not recorded | – | – | – | – | – |")
            continue
        mode = "/".join(sorted({str(b.get("mode")) for b in bs}))
        if any(b.get("steps_per_task") for b in bs):
            mode += f" ({bs[0]['steps_per_task']}/task)"
        tr = stat(rs, "budget.train_steps_per_task")[0]
        ex = stat(rs, "budget.extra_steps_per_task")[0]
        ep = statistics.fmean(float(b.get("train_epochs") or 0) for b in bs)
        seen = statistics.fmean(float(b.get("samples_seen") or 0) for b in bs)
        per0 = (bs[0].get("per_task") or [{}])[0]
        phases = ", ".join(f"{k} {v.get('steps')}" for k, v in (per0.get("phases") or {}).items())
        extra0 = ", ".join(f"{k} {v}" for k, v in (per0.get("extra_steps") or {}).items() if v)
        lines.append(f"| `{lab}` | {mode} | {tr:.0f} | {ex:.0f} | {ep:.2f} | {seen:.0f} | "
                     f"{phases or '–'}{'; extra: ' + extra0 if extra0 else ''} |")
    return "\n".join(lines)


def config_differences(runs: list[Run]) -> dict[str, list[Any]]:
    """Settings (outside ``strategy``/``seed``/``logger``/``hydra``/``resume``) that differ
    between runs of one benchmark. Config keys, not work done: :func:`budget_check` judges
    the budget on the optimiser steps each run recorded."""
    flat: list[dict[str, Any]] = []
    for r in runs:
        cfg = {k: v for k, v in (r.res.get("config") or {}).items()
               if k not in ("strategy", "seed", "logger", "hydra", "resume")}
        flat.append(_flatten(cfg))
    out = {}
    for k in sorted({k for f in flat for k in f}):
        vals = {json.dumps(f.get(k), sort_keys=True) for f in flat}
        if len(vals) > 1:
            out[k] = sorted(vals)
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out



def claims(groups: Groups, th: Thresholds = THRESHOLDS) -> list[Claim]:
    """Every registered paper's claim, judged on one benchmark's runs."""
    return [c.check(groups, th) for c in registered()]


def claims_markdown(groups: Groups, th: Thresholds = THRESHOLDS) -> str:
    lines = ["| paper | claim | verdict | evidence (computed from the runs above) |",
             "|---|---|---|---|"]
    for c in claims(groups, th):
        lines.append(f"| {c.paper} | {c.claim} | **{c.verdict}** | {c.evidence} |")
    return "\n".join(lines)


def thresholds_markdown(th: Thresholds = THRESHOLDS) -> str:
    """The thresholds every verdict above uses (for the report)."""
    rows = [(c.label, c.rule(th)) for c in registered()]
    rows.append(("budget", "every strategy of a benchmark has the same train steps per task "
                           "(`budget`), except those the sweep's `budget_exceptions` names"))
    return "\n".join(["| check | rule |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


# --- project targets (bench scripts) --------------------------------------------------------------

def size_target(runs: list[Run], individual: list[Run], target: str,
                th: Thresholds = THRESHOLDS) -> tuple[bool, str]:
    """``th.targets[target]``: ≥ ``min_ratio`` fewer stored params than ``individual`` at
    most ``max_points_below`` its average accuracy; (met, one line)."""
    t = th.targets[target]
    ratio = stat(individual, "compression.stored_params")[0] / stat(runs, "compression.stored_params")[0]
    gap = 100 * (stat(individual, "avg_acc")[0] - stat(runs, "avg_acc")[0])
    ok = ratio >= t["min_ratio"] and gap <= t["max_points_below"]
    return ok, (f"{ratio:.2f}x fewer stored parameters than individual (target >= "
                f"{t['min_ratio']:g}x), avg_acc {gap:.2f} points below it (target <= "
                f"{t['max_points_below']:g}): {'met' if ok else 'NOT met'}")


def ada_targets(ada: list[Run], pn: list[Run], th: Thresholds = THRESHOLDS) -> list[tuple[bool, str]]:
    """``th.targets["ada_qpacknet_vs_packnet"]``: accuracy gap, code bits and bytes vs PackNet."""
    t = th.targets["ada_qpacknet_vs_packnet"]
    gap = 100 * (stat(ada, "avg_acc")[0] - stat(pn, "avg_acc")[0])
    bits = stat(ada, "compression.mean_code_bits")[0]
    ratio = stat(pn, "compression.model_bytes")[0] / stat(ada, "compression.model_bytes")[0]
    checks = [(abs(gap) <= t["max_points_gap"], f"avg_acc {gap:+.2f} points vs PackNet (target "
               f"within {t['max_points_gap']:g})"),
              (bits <= t["max_code_bits"], f"mean stored code bits per used weight {bits:.2f} "
               f"(target <= {t['max_code_bits']:g})"),
              (ratio >= t["min_bytes_ratio"], f"model_bytes {ratio:.2f}x smaller than PackNet's "
               f"(target >= {t['min_bytes_ratio']:g}x)")]
    return [(ok, f"{line}: {'met' if ok else 'NOT met'}") for ok, line in checks]

