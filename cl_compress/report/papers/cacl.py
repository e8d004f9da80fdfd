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
# settings), by number of tasks; docs/papers.md: the papers give no 10-task figure.
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


def growth_of(run: Run) -> str:
    """The growth rule a CACL run followed: results.json ``strategy_extra.growth`` (recorded
    since ``auto``), else its config (``auto`` resolved by the run's benchmark, as the strategy
    does); runs older than the setting grew by ``full``."""
    from cl_compress.strategies.cacl import authors_growth  # the one statement of the rule

    g = (run.res.get("strategy_extra") or {}).get("growth") or run.config.get("growth") or "full"
    return authors_growth(str(run.res.get("benchmark", ""))) if g == "auto" else str(g)


def _judge(rs: list[Run], ind: list[Run], th: Thresholds) -> tuple[str, str]:
    """(verdict, evidence) of one group of CACL runs against ``individual``."""
    T = rs[0].res["n_tasks"]
    n_ref, dataset, paper_ratio = cacl_reference(T)
    own = stat(rs, "compression.stored_params")[0]
    ref = (stat(ind, "compression.stored_params")[0] if ind
           else stat(rs, "compression.individual_bits")[0] / 32)
    ratio = ref / own
    need = th.cacl_ratio_share * paper_ratio
    ev = (f"{ratio:.2f}× fewer stored params than {T} individual models ({own:.0f} vs {ref:.0f}); "
          f"paper figure for the nearest task count: {paper_ratio}× on {dataset} ({n_ref} tasks; "
          f"≥ {need:.2f}× counts as ~{paper_ratio}×); {cacl_kept(rs)}")
    if not ind:
        return "inconclusive", ev + "; `individual` not measured, so accuracy cannot be compared"
    d, noise, _ = diff_points(rs, ind, th=th)
    similar = d >= -max(th.similar_points, noise)
    ev += (f"; avg acc {pct(rs)} vs individual {pct(ind)}: {d:+.2f} pts (similar or better if "
           f"at most {th.similar_points:g} pts or the seed noise {noise:.2f} lower); partly "
           f"supported from {th.cacl_ratio_partly:g}×")
    if similar and ratio >= need:
        return "supported", ev
    if similar and ratio >= th.cacl_ratio_partly:
        return "partly supported", ev
    return "not supported", ev


AUTHORS_BRANCHES = ("authors_average", "authors_full")


@register_claim("cacl", label="CACL", rule=rule, order=3)
def cacl(groups: Groups, th: Thresholds = THRESHOLDS) -> Claim:
    """Judged under the authors' growth branch for the stream (``get_avg`` on CIFAR-100 and
    miniImageNet, the initial rank elsewhere: the branch their figure for that kind of stream
    was made with); runs of the other authors' branch are judged too and shown beside it."""
    from cl_compress.strategies.cacl import authors_growth

    paper = "CACL (Teja & Panda 2020)"
    found = sorted(((lab, rs) for lab, rs in groups.items() if rs and rs[0].strategy == "cacl"),
                   key=lambda x: (x[0] != "cacl", -len(x[1])))
    T = found[0][1][0].res["n_tasks"] if found else 20
    _, _, paper_ratio = cacl_reference(T)
    text = f"~{paper_ratio}× fewer parameters than individual models at similar accuracy"
    if not found:
        return Claim(paper, text, "not measured", "`cacl` is not in this sweep")
    want = authors_growth(str(found[0][1][0].res.get("benchmark", "")))
    by_branch: dict[str, list[Run]] = {}
    for _, rs in found:
        by_branch.setdefault(growth_of(rs[0]), rs)
    ind = pick(groups, "individual")
    others = [(g, _judge(rs, ind, th)) for g, rs in by_branch.items()
              if g != want and g in AUTHORS_BRANCHES]
    if want not in by_branch:
        seen = ", ".join(f"`{g}`" for g in by_branch)
        ev = (f"no CACL run with growth={want}, the authors' branch for this stream (runs: {seen})")
        ev += "".join(f"; under growth={g} (the authors' branch for other streams) it would read "
                      f"**{v}**: {e}" for g, (v, e) in others)
        return Claim(paper, text, "not measured", ev)
    verdict, ev = _judge(by_branch[want], ind, th)
    ev = f"growth={want} (the authors' branch for this stream): " + ev
    for g, (v, e) in others:
        ev += (f"; beside it, growth={g} (the authors' branch for other streams): **{v}**"
               f"{' (a different verdict)' if v != verdict else ' (the same verdict)'}: {e}")
    return Claim(paper, text, verdict, ev)
