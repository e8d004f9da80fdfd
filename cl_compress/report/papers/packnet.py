"""PackNet (Mallya & Lazebnik 2018): no forgetting, and capacity shrinks for later tasks."""

from __future__ import annotations

import statistics

from cl_compress.report.claim_base import (
    THRESHOLDS,
    Claim,
    Groups,
    Thresholds,
    pick,
    register_claim,
    series,
    steps_text,
)


def rule(th: Thresholds) -> str:
    return (f"max forgetting and −BWT over seeds ≤ {100 * th.zero_forgetting:g} pt, and the "
            "share of free weights when each task starts strictly decreasing")


@register_claim("packnet", label="PackNet", rule=rule, order=0)
def packnet(groups: Groups, th: Thresholds = THRESHOLDS) -> Claim:
    paper, text = "PackNet (Mallya & Lazebnik 2018)", "no forgetting; capacity shrinks for later tasks"
    rs = pick(groups, "packnet")
    if not rs:
        return Claim(paper, text, "not measured", "`packnet` is not in this sweep")
    # the claim is about the task-IL answers (task id given); a class-IL run with task
    # inference keeps them under ``task_il`` (its top-level figures include inference errors)
    til = [r.res.get("task_il") or r.res for r in rs]
    fmax = max(t.get("forgetting") or 0.0 for t in til)
    bmin = min(t.get("bwt") or 0.0 for t in til)
    zero = fmax <= th.zero_forgetting and bmin >= -th.zero_forgetting
    free = series(rs, "free_fraction")
    avail = [1.0] + free[:-1] if free else []
    shrinks = len(avail) > 1 and all(b < a for a, b in zip(avail, avail[1:]))
    T = rs[0].res["n_tasks"]
    learned = [statistics.fmean(t["acc_matrix"][j][j] for t in til) for j in range(T)]
    ev = (f"max forgetting over {len(rs)} seed(s) {100 * fmax:.3f} pts, min BWT {100 * bmin:+.3f} pts "
          f"(none if ≤ {100 * th.zero_forgetting:.1f}); ")
    ev += ("share of weights free when each task starts: " + ", ".join(f"{100 * a:.1f}%" for a in avail)
           if avail else "free capacity per task not logged (no `compress/free_fraction/*`)")
    ev += "; accuracy when learned: " + ", ".join(f"{100 * a:.1f}" for a in learned)
    ev += f"; {steps_text(rs)}"
    verdict = ("supported" if zero and shrinks else "partly supported" if zero or shrinks
               else "not supported")
    if not avail and zero:
        verdict = "partly supported"
    return Claim(paper, text, verdict, ev)

