"""Ada-QPacknet (Pietroń et al. 2023): 4–8-bit quantised sub-networks match fp32 ones."""

from __future__ import annotations

import statistics
from typing import Any

from cl_compress.report.claim_base import (
    ABSENT_MEANS,
    THRESHOLDS,
    Claim,
    Groups,
    Thresholds,
    diff_points,
    pct,
    pick,
    register_claim,
    steps_text,
)
from cl_compress.report.runs import Run, stat

# the policy a strategy follows where its config has no key for it
IMPLIED_POLICIES: dict[str, dict[str, Any]] = {
    "packnet": {"reinit_free": False, "val_fraction": 0.0, "search": "none (fixed prune_ratio)"},
    "ada_qpacknet": {"prune_last": True, "prune_ratio": "searched per layer", "prune_schedule": [],
                     "search": "prune ratios + bit-width"},
}
SEARCH_KEYS = ("v_min", "v_max", "population", "search_epochs", "fitness_acc_weight",
               "search_seed", "quant_method", "start_bits", "min_bits", "tolerance", "kmeans_iters")


def policy_differences(a: list[Run], b: list[Run]) -> list[str]:
    """Strategy policies in which the runs of ``a`` and ``b`` differ (their results.json
    ``strategy_config``, with :data:`IMPLIED_POLICIES` for keys one side has no setting for;
    the search's own knobs are summed up as one ``search`` entry)."""
    ca = IMPLIED_POLICIES.get(a[0].strategy, {}) | a[0].config
    cb = IMPLIED_POLICIES.get(b[0].strategy, {}) | b[0].config
    out = []
    for k in sorted(set(ca) | set(cb)):
        if k in SEARCH_KEYS or k == "name":
            continue
        va, vb = ca.get(k, "–"), cb.get(k, "–")
        if va != vb:
            out.append(f"{k} {va} vs {vb}")
    return out


def rule(th: Thresholds) -> str:
    return (f"test accuracy of each task's fp32 sub-network minus the same sub-network at fixed "
            f"{PAPER_LOW_BITS} and {th.max_bits} bits with the authors' codebook (k-means over the "
            f"masked layer with its zeros; `strategy.probe_bits`), mean over tasks and seeds, "
            f"≤ {th.quant_drop_points:g} pts at both: supported; at {th.max_bits} only: partly; "
            "the searched widths and the PackNet comparison are shown, not judged")


ABSENT_MEANS.update({"capacity": "exclusive"})


def _bits(run: Run) -> list[int]:
    b = (run.res.get("compression") or {}).get("bits_per_task")
    if not b:
        b = (run.res.get("strategy_extra") or {}).get("bits_per_task")
    return [int(x) for x in b or []]


def quantisation_drops(run: Run) -> list[float] | None:
    """Per task, test accuracy before compression minus right after it, in points
    (``acc_before_compression[t] - acc_matrix[t][t]``); None when not recorded."""
    before = run.res.get("acc_before_compression")
    # a class-IL run with task inference: compression drops are task-IL figures
    R = (run.res.get("task_il") or {}).get("acc_matrix") or run.res.get("acc_matrix") or []
    if not isinstance(before, list) or len(before) < len(R) or not R:
        return None
    if any(before[t] is None for t in range(len(R))):
        return None
    return [100 * (float(before[t]) - float(R[t][t])) for t in range(len(R))]


PAPER_LOW_BITS = 4  # the paper's 4–8 bits: judged at 4 and at ``Thresholds.max_bits`` (8)


def fixed_width_drops(run: Run, widths: tuple[int, ...]) -> dict[int, list[float]] | None:
    """Per fixed width, per task: test accuracy of the fp32 sub-network minus the same
    sub-network quantised at that width with the authors' codebook, in points (results.json
    ``strategy_extra.fixed_width_probe``, written with ``strategy.probe_bits``); None when
    not recorded."""
    tasks = ((run.res.get("strategy_extra") or {}).get("fixed_width_probe") or {}).get("tasks")
    if not tasks:
        return None
    rows = [tasks[k] for k in sorted(tasks, key=int)]
    if any(str(w) not in row or "fp32" not in row for row in rows for w in widths):
        return None
    return {w: [100 * (float(row["fp32"]) - float(row[str(w)])) for row in rows] for w in widths}


@register_claim("ada_qpacknet", label="Ada-QPacknet", rule=rule, order=1)
def ada_qpacknet(groups: Groups, th: Thresholds = THRESHOLDS) -> Claim:
    """The paper: sub-networks quantised to 4–8 bits match their fp32 selves. Judged on the
    test accuracy of each task's fp32 sub-network against the same sub-network at fixed 4 and
    8 bits with the authors' codebook (``strategy.probe_bits``); the searched widths and their
    drops are shown, not judged (the width search enforces its own tolerance)."""
    paper = "Ada-QPacknet (Pietroń et al. 2023)"
    text = "4–8-bit quantised sub-networks match fp32 ones (test accuracy before vs after)"
    # the default (the authors' shared bit capacity) first; else the exclusive-ownership runs
    rs = pick(groups, "ada_qpacknet", capacity="shared_bits") or pick(groups, "ada_qpacknet")
    if not rs:
        return Claim(paper, text, "not measured", "`ada_qpacknet` is not in this sweep")
    bits = [b for r in rs for b in _bits(r)]
    ev = ""
    if bits:
        drops = [quantisation_drops(r) for r in rs]
        ev = (f"not judged (the search stops before a held-out drop of {th.quant_drop_points:g}): "
              f"searched widths {min(bits)}–{max(bits)} bits (mean {statistics.fmean(bits):.2f})")
        if all(d for d in drops):
            ev += (", test drop at the searched width "
                   f"{statistics.fmean(statistics.fmean(d) for d in drops if d):+.2f} pts")
    pn = pick(groups, "packnet")
    if pn:
        d, noise, _ = diff_points(rs, pn, th=th)
        size = stat(rs, "compression.stored_bits")[0] / max(1.0, stat(pn, "compression.stored_bits")[0])
        pol = policy_differences(rs, pn)
        ev += (f"; beside it, not judged: avg acc {pct(rs)} vs fp32 `packnet` {pct(pn)} "
               f"({d:+.2f} pts, noise {noise:.2f}), stored bits {size:.2f}× PackNet's, "
               f"{steps_text(rs)} vs {steps_text(pn)}; policies differ, so this is not a single-factor "
               "comparison: " + ("; ".join(pol) if pol else "none"))
    widths = (PAPER_LOW_BITS, th.max_bits)
    fixed = [fixed_width_drops(r, widths) for r in rs]
    if any(f is None for f in fixed):
        return Claim(paper, text, "not measured", "no fixed-width probe in the results (run with "
                     f"`strategy.probe_bits=[{widths[0]},{widths[1]}]`); " + ev.lstrip("; "))
    mean = {w: statistics.fmean(statistics.fmean(f[w]) for f in fixed if f) for w in widths}
    worst = {w: max(max(f[w]) for f in fixed if f) for w in widths}
    T = min(len(f[widths[0]]) for f in fixed if f)
    ok = {w: mean[w] <= th.quant_drop_points for w in widths}
    head = ("test accuracy of each task's fp32 sub-network minus the same sub-network at a fixed "
            "width, the authors' codebook (k-means over the masked layer with its zeros): "
            + ", ".join(f"{w} bits {mean[w]:+.2f} pts (worst task {worst[w]:+.2f})" for w in widths)
            + f" (mean over {T} tasks and {len(fixed)} seed(s); a match if ≤ {th.quant_drop_points:g})")
    if all(ok.values()):
        verdict = "supported"
    elif ok[th.max_bits]:
        verdict = "partly supported"
        head += f"; matches at {th.max_bits} bits, not at {widths[0]}"
    else:
        verdict = "not supported"
    return Claim(paper, text, verdict, head + "; " + ev.lstrip("; "))
