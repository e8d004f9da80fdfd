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
    return (f"every task ≤ {th.max_bits} bits and mean test-accuracy drop of the same "
            f"sub-network before → after quantisation ≤ {th.quant_drop_points:g} pts "
            "(`acc_before_compression[t] − acc_matrix[t][t]`, over tasks and seeds); "
            "the PackNet comparison and its differing policies are shown, not judged")


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


@register_claim("ada_qpacknet", label="Ada-QPacknet", rule=rule, order=1)
def ada_qpacknet(groups: Groups, th: Thresholds = THRESHOLDS) -> Claim:
    paper = "Ada-QPacknet (Pietroń et al. 2023)"
    text = "4–8-bit quantised sub-networks match fp32 ones (test accuracy before vs after)"
    # the default (the authors' shared bit capacity) first; else the exclusive-ownership runs
    rs = pick(groups, "ada_qpacknet", capacity="shared_bits") or pick(groups, "ada_qpacknet")
    if not rs:
        return Claim(paper, text, "not measured", "`ada_qpacknet` is not in this sweep")
    bits = [b for r in rs for b in _bits(r)]
    if not bits:
        return Claim(paper, text, "not measured", "the runs log no `bits_per_task`")
    drops = [quantisation_drops(r) for r in rs]
    ev = (f"bits per task {min(bits)}–{max(bits)} (mean {statistics.fmean(bits):.2f}; "
          f"≤ {th.max_bits} required)")
    if max(bits) < 4:
        ev += ", fewer bits than the paper's 4–8 were enough"
    pn = pick(groups, "packnet")
    if pn:
        d, noise, _ = diff_points(rs, pn, th=th)
        size = stat(rs, "compression.stored_bits")[0] / max(1.0, stat(pn, "compression.stored_bits")[0])
        pol = policy_differences(rs, pn)
        ev += (f"; beside it, not judged: avg acc {pct(rs)} vs fp32 `packnet` {pct(pn)} "
               f"({d:+.2f} pts, noise {noise:.2f}), stored bits {size:.2f}× PackNet's, "
               f"{steps_text(rs)} vs {steps_text(pn)}; policies differ, so this is not a single-factor "
               "comparison: " + ("; ".join(pol) if pol else "none"))
    if any(d is None for d in drops):
        return Claim(paper, text, "not measured", ev + "; the test accuracy before quantisation "
                     "(`acc_before_compression`) is not in the results (older runs)")
    per_seed = [statistics.fmean(d) for d in drops if d]
    mean_drop = statistics.fmean(per_seed)
    ev = (f"test accuracy drop of the same sub-network before → after quantisation "
          f"{mean_drop:+.2f} pts (mean over tasks and {len(per_seed)} seed(s), worst task "
          f"{max(max(d) for d in drops if d):+.2f}; at most {th.quant_drop_points:g}); ") + ev
    ok = max(bits) <= th.max_bits and mean_drop <= th.quant_drop_points
    return Claim(paper, text, "supported" if ok else "not supported", ev)

