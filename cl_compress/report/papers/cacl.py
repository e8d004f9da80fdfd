"""CACL (Teja & Panda 2020): ~x fewer parameters than individual models at similar accuracy."""

from __future__ import annotations

import statistics

from cl_compress.report.claim_base import (
    THRESHOLDS,
    Claim,
    Groups,
    Thresholds,
    diff_points,
    pct,
    pick,
    register_claim,
)
from cl_compress.report.runs import Run, stat

# CACL's reported "x fewer params than individual task models" (abstract; README for the
# settings), by number of tasks; shared/reference/algorithms.md has no 10-task figure.
CACL_REFERENCES: list[tuple[int, str, float]] = [
    (20, "20-split CIFAR-100", 3.64),
    (20, "miniImageNet 20×5", 2.88),
    (5, "5-datasets (5 × 10 classes)", 5.91),
]


def rule(th: Thresholds) -> str:
    return (f"ratio vs individual ≥ {th.cacl_ratio_share:g} × the paper's figure for the "
            f"nearest task count ({', '.join(f'{n} tasks {r}×' for n, _, r in CACL_REFERENCES)}) "
            f"at accuracy at most {th.similar_points:g} pts (or the seed noise) below "
            f"individual; partly from {th.cacl_ratio_partly:g}×")


def cacl_reference(n_tasks: int) -> tuple[int, str, float]:
    """The paper figure for the number of tasks nearest ``n_tasks`` (first listed on a tie)."""
    return min(CACL_REFERENCES, key=lambda ref: abs(ref[0] - n_tasks))


def cacl_kept(runs: list[Run]) -> str:
    """Kept new rank per task (all factorised layers, mean over seeds) beside the optimiser
    steps of that task: how far the training budget let CACL sparsify."""
    kept: list[list[float]] = []
    for r in runs:
        ranks = (r.res.get("strategy_extra") or {}).get("ranks") or {}
        if not ranks:
            continue
        T = min(len(v) for v in ranks.values())
        cum = [sum(v[t] for v in ranks.values()) for t in range(T)]
        kept.append([c - (cum[t - 1] if t else 0) for t, c in enumerate(cum)])
    if not kept:
        return "kept rank not logged"
    T = min(len(k) for k in kept)
    mean_kept = [statistics.fmean(k[t] for k in kept) for t in range(T)]
    steps = [r.steps_per_task() for r in runs if r.budget is not None]
    init = sum(((runs[0].res.get("strategy_extra") or {}).get("initial_ranks") or {}).values())
    parts = []
    for t in range(T):
        s = statistics.fmean(p[t] for p in steps if p and len(p) > t) if steps else None
        parts.append(f"task {t}: {mean_kept[t]:.0f}" + (f" @ {s:.0f} steps" if s is not None else ""))
    return ("new components kept per task (all layers" + (f", of {init} fresh" if init else "")
            + "): " + ", ".join(parts) + ("" if steps else " (steps not recorded)"))


@register_claim("cacl", label="CACL", rule=rule, order=3)
def cacl(groups: Groups, th: Thresholds = THRESHOLDS) -> Claim:
    paper = "CACL (Teja & Panda 2020)"
    rs = pick(groups, "cacl")
    T = rs[0].res["n_tasks"] if rs else 20
    n_ref, dataset, paper_ratio = cacl_reference(T)
    text = f"~{paper_ratio}× fewer parameters than individual models at similar accuracy"
    if not rs:
        return Claim(paper, text, "not measured", "`cacl` is not in this sweep")
    ind = pick(groups, "individual")
    own = stat(rs, "compression.stored_params")[0]
    ref = (stat(ind, "compression.stored_params")[0] if ind
           else stat(rs, "compression.individual_bits")[0] / 32)
    ratio = ref / own
    need = th.cacl_ratio_share * paper_ratio
    ev = (f"{ratio:.2f}× fewer stored params than {T} individual models ({own:.0f} vs {ref:.0f}); "
          f"paper figure for the nearest task count: {paper_ratio}× on {dataset} ({n_ref} tasks; "
          f"≥ {need:.2f}× counts as ~{paper_ratio}×); {cacl_kept(rs)}")
    if not ind:
        return Claim(paper, text, "inconclusive", ev + "; `individual` not measured, so accuracy "
                     "cannot be compared")
    d, noise, _ = diff_points(rs, ind, th=th)
    similar = d >= -max(th.similar_points, noise)
    ev += (f"; avg acc {pct(rs)} vs individual {pct(ind)}: {d:+.2f} pts (similar or better if "
           f"at most {th.similar_points:g} pts or the seed noise {noise:.2f} lower); partly "
           f"supported from {th.cacl_ratio_partly:g}×")
    if similar and ratio >= need:
        verdict = "supported"
    elif similar and ratio >= th.cacl_ratio_partly:
        verdict = "partly supported"
    else:
        verdict = "not supported"
    return Claim(paper, text, verdict, ev)

