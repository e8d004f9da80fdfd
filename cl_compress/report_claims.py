"""What one benchmark's runs say, for the report: the shared stream and settings, the
Pareto front, and (re-exported from :mod:`cl_compress.claims`, the one place that judges
them) the budget check and the papers' claims.

Imports run one way: :mod:`cl_compress.report` → this module → :mod:`cl_compress.claims`
→ :mod:`cl_compress.runs`.
"""

from __future__ import annotations

from .claims import (  # noqa: F401  (re-exported for the report, the notebook and tests)
    CACL_REFERENCES,
    THRESHOLDS,
    Budget,
    Claim,
    Thresholds,
    ada_qpacknet,
    budget_check,
    budget_table,
    cacl,
    claims,
    claims_markdown,
    config_differences,
    diff_points,
    lrpet,
    packnet,
    pick,
    policy_differences,
    thresholds_markdown,
)
from .runs import Run, stat


def common_settings(runs: list[Run]) -> str:
    """One line with the shared stream and settings of a benchmark's runs."""
    c = (runs[0].res.get("config") or {}) if runs else {}
    b, t, m = c.get("benchmark", {}), c.get("train", {}), c.get("model", {})
    parts = [f"{runs[0].res.get('n_tasks')} tasks" if runs else "",
             f"model `{m.get('name', '?')}`", f"{t.get('epochs', '?')} epoch(s)/task",
             f"{t.get('optimizer', '?')} lr {t.get('lr', '?')}", f"batch {t.get('batch_size', '?')}"]
    if t.get("steps_per_task"):
        parts[2] = f"{t['steps_per_task']} optimiser steps/task"
    if b.get("max_train_per_task"):
        parts.append(f"≤ {b['max_train_per_task']} training samples/task")
    if b.get("max_test_per_task"):
        parts.append(f"≤ {b['max_test_per_task']} test samples/task")
    return ", ".join(p for p in parts if p)


def pareto(groups: dict[str, list[Run]]) -> list[str]:
    """Labels that no other label beats on both stored bits (smaller) and avg_acc (higher)."""
    pts = {lab: (stat(rs, "compression.stored_bits")[0], stat(rs, "avg_acc")[0])
           for lab, rs in groups.items()}
    return [a for a, (ba, aa) in pts.items()
            if not any(bb <= ba and ab >= aa and (bb, ab) != (ba, aa) for bb, ab in pts.values())]
