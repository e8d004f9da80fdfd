"""What one benchmark's runs say: is the comparison fair (same stream and budget), which
strategies are Pareto-optimal, and does our measurement support each paper's central claim.

Every verdict is one of ``supported``, ``partly supported``, ``not supported``,
``inconclusive`` (the difference is inside the seed noise, or one side has a single seed)
or ``not measured`` (a strategy or variant the claim needs is absent from the sweep).
The thresholds below are part of the report (each claim prints its criterion).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any

from .report import Run, stat

ZERO_FORGETTING = 1e-3       # PackNet: max forgetting/|BWT| over seeds (fraction) counted as none
CACL_PAPER_RATIO = 3.64      # CACL abstract: 3.64x fewer params than individual models (CIFAR-100)
CACL_RATIO_MIN = 0.8 * CACL_PAPER_RATIO  # "~3.6x": within 20 % of the paper's figure
CACL_RATIO_PARTLY = 1.5      # fewer params than individual models, but well below the claim
SIMILAR_POINTS = 2.0         # "similar accuracy": at most 2 points lower (Ada-QPacknet's tolerance)
NOISE_SE = 2.0               # a difference counts when it exceeds 2 standard errors over seeds


def budget_differences(runs: list[Run]) -> dict[str, list[Any]]:
    """Settings (outside ``strategy``/``seed``/``logger``/``hydra``) that differ between runs
    of one benchmark: the comparison is only fair when this is empty."""
    flat: list[dict[str, Any]] = []
    for r in runs:
        cfg = {k: v for k, v in (r.res.get("config") or {}).items()
               if k not in ("strategy", "seed", "logger", "hydra", "resume")}
        flat.append(_flatten(cfg))
    keys = sorted({k for f in flat for k in f})
    out = {}
    for k in keys:
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


def common_settings(runs: list[Run]) -> str:
    """One line with the shared stream and budget of a benchmark's runs."""
    c = (runs[0].res.get("config") or {}) if runs else {}
    b, t, m = c.get("benchmark", {}), c.get("train", {}), c.get("model", {})
    parts = [f"{runs[0].res.get('n_tasks')} tasks" if runs else "",
             f"model `{m.get('name', '?')}`", f"{t.get('epochs', '?')} epoch(s)/task",
             f"{t.get('optimizer', '?')} lr {t.get('lr', '?')}", f"batch {t.get('batch_size', '?')}"]
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


@dataclass
class Claim:
    paper: str
    claim: str
    verdict: str
    evidence: str


def pick(groups: dict[str, list[Run]], strategy: str, **where: object) -> list[Run]:
    """Runs of ``strategy`` whose config matches ``where``; the plain (default) variant
    first, else the variant with most seeds; [] when absent."""
    found = [(lab, rs) for lab, rs in groups.items() if rs and rs[0].strategy == strategy
             and all(rs[0].config.get(k) == v for k, v in where.items())]
    if not found:
        return []
    found.sort(key=lambda x: (x[0] != strategy, -len(x[1])))
    return found[0][1]


def diff_points(a: list[Run], b: list[Run], key: str = "avg_acc") -> tuple[float, float, int]:
    """Mean difference ``a - b`` in points, its noise threshold (``NOISE_SE`` standard errors,
    in points) and the smaller number of seeds."""
    ma, sa, na = stat(a, key)
    mb, sb, nb = stat(b, key)
    se = math.sqrt(sa ** 2 / max(na, 1) + sb ** 2 / max(nb, 1))
    return 100 * (ma - mb), 100 * NOISE_SE * se, min(na, nb)


def _pct(runs: list[Run], key: str = "avg_acc") -> str:
    m, s, n = stat(runs, key)
    return f"{100 * m:.2f}" + (f" ± {100 * s:.2f}" if n > 1 else "") + f" % (n={n})"


def _series(runs: list[Run], kind: str) -> list[float]:
    """Per task, the mean over layers and seeds of a per-layer ``compress/<kind>/*`` figure."""
    T = min(r.res["n_tasks"] for r in runs)
    out = []
    for t in range(T):
        vals = [statistics.fmean(v[t] for v in r.per_task.get(kind, {}).values())
                for r in runs if r.per_task.get(kind) and all(t in v for v in r.per_task[kind].values())]
        if not vals:
            return []
        out.append(statistics.fmean(vals))
    return out


def packnet(groups: dict[str, list[Run]]) -> Claim:
    paper, text = "PackNet (Mallya & Lazebnik 2018)", "no forgetting; capacity shrinks for later tasks"
    rs = pick(groups, "packnet")
    if not rs:
        return Claim(paper, text, "not measured", "`packnet` is not in this sweep")
    fmax = max(r.get("forgetting") or 0.0 for r in rs)
    bmin = min(r.get("bwt") or 0.0 for r in rs)
    zero = fmax <= ZERO_FORGETTING and bmin >= -ZERO_FORGETTING
    free = _series(rs, "free_fraction")
    avail = [1.0] + free[:-1] if free else []
    shrinks = len(avail) > 1 and all(b < a for a, b in zip(avail, avail[1:]))
    T = rs[0].res["n_tasks"]
    learned = [statistics.fmean(r.res["acc_matrix"][j][j] for r in rs) for j in range(T)]
    ev = (f"max forgetting over {len(rs)} seed(s) {100 * fmax:.3f} pts, min BWT {100 * bmin:+.3f} pts "
          f"(none if ≤ {100 * ZERO_FORGETTING:.1f}); ")
    ev += ("share of weights free when each task starts: " + ", ".join(f"{100 * a:.1f}%" for a in avail)
           if avail else "free capacity per task not logged (no `compress/free_fraction/*`)")
    ev += "; accuracy when learned: " + ", ".join(f"{100 * a:.1f}" for a in learned)
    verdict = ("supported" if zero and shrinks else "partly supported" if zero or shrinks
               else "not supported")
    if not avail and zero:
        verdict = "partly supported"
    return Claim(paper, text, verdict, ev)


def ada_qpacknet(groups: dict[str, list[Run]]) -> Claim:
    paper = "Ada-QPacknet (Pietroń et al. 2023)"
    text = "4–8-bit quantised sub-networks match fp32 ones (compared with PackNet)"
    rs = pick(groups, "ada_qpacknet")
    if not rs:
        return Claim(paper, text, "not measured", "`ada_qpacknet` is not in this sweep")
    extras = [r.res.get("strategy_extra") or {} for r in rs]
    bits = [b for e in extras for b in e.get("bits_per_task", [])]
    drops = [100 * (q["val_acc_fp32"] - q["val_acc"]) for e in extras
             for q in (e.get("quantisation") or {}).values() if "val_acc_fp32" in q and "val_acc" in q]
    if not bits:
        return Claim(paper, text, "not measured", "the runs log no `bits_per_task`")
    tol = float(rs[0].config.get("tolerance", SIMILAR_POINTS))
    ok_bits = max(bits) <= 8
    ok_drop = bool(drops) and statistics.fmean(drops) <= tol
    ev = (f"bits per task {min(bits)}–{max(bits)} (mean {statistics.fmean(bits):.2f}); held-out drop "
          f"fp32→quantised " + (f"{statistics.fmean(drops):+.2f} pts mean, {max(drops):+.2f} max"
                                 if drops else "not logged") + f" (tolerance {tol:g} pts)")
    pn = pick(groups, "packnet")
    ok_pn = True
    if pn:
        d, noise, n = diff_points(rs, pn)
        ok_pn = d >= -max(tol, noise)
        size = stat(rs, "compression.stored_bits")[0] / max(1.0, stat(pn, "compression.stored_bits")[0])
        ev += (f"; avg acc {_pct(rs)} vs fp32 `packnet` {_pct(pn)}: {d:+.2f} pts; stored bits "
               f"{size:.2f}× PackNet's")
    else:
        ev += "; `packnet` not measured (judged on the held-out drop only)"
    if max(bits) < 4:
        ev += "; fewer bits than the paper's 4–8 were enough"
    verdict = "supported" if ok_bits and ok_drop and ok_pn else "not supported"
    return Claim(paper, text, verdict, ev)


def lrpet(groups: dict[str, list[Run]]) -> Claim:
    paper = "LRPET (Guo et al. 2022)"
    text = "low-rank projection + energy transfer beats truncate-then-fine-tune"
    et = pick(groups, "lrpet", mode="lrpet", energy_transfer=True)
    tr = pick(groups, "lrpet", mode="truncate")
    if not et or not tr:
        missing = [n for n, g in (("lrpet", et), ("lrpet[mode=truncate]", tr)) if not g]
        return Claim(paper, text, "not measured", f"{' and '.join(missing)} not in this sweep "
                     "(the comparison presets add the `strategy.mode=truncate` variant)")
    d, noise, n = diff_points(et, tr)
    ev = (f"avg acc {_pct(et)} vs truncate {_pct(tr)}: {d:+.2f} pts (noise {noise:.2f}); stored "
          f"params {stat(et, 'compression.stored_params')[0]:.0f} vs "
          f"{stat(tr, 'compression.stored_params')[0]:.0f}")
    noet = pick(groups, "lrpet", mode="lrpet", energy_transfer=False)
    if noet:
        d2, noise2, _ = diff_points(et, noet)
        ev += f"; energy transfer on vs off: {d2:+.2f} pts (noise {noise2:.2f})"
    if n < 2:
        return Claim(paper, text, "inconclusive", ev + "; one seed: no noise estimate")
    verdict = "supported" if d > noise else "not supported" if d < -noise else "inconclusive"
    return Claim(paper, text, verdict, ev)


def cacl(groups: dict[str, list[Run]]) -> Claim:
    paper = "CACL (Teja & Panda 2020)"
    text = f"~{CACL_PAPER_RATIO}× fewer parameters than individual models at similar accuracy"
    rs = pick(groups, "cacl")
    if not rs:
        return Claim(paper, text, "not measured", "`cacl` is not in this sweep")
    ind = pick(groups, "individual")
    own = stat(rs, "compression.stored_params")[0]
    ref = (stat(ind, "compression.stored_params")[0] if ind
           else stat(rs, "compression.individual_bits")[0] / 32)
    ratio = ref / own
    T = rs[0].res["n_tasks"]
    ev = (f"{ratio:.2f}× fewer stored params than {T} individual models ({own:.0f} vs {ref:.0f}; "
          f"≥ {CACL_RATIO_MIN:.2f}× counts as ~{CACL_PAPER_RATIO}×)")
    if not ind:
        return Claim(paper, text, "inconclusive", ev + "; `individual` not measured, so accuracy "
                     "cannot be compared")
    d, noise, _ = diff_points(rs, ind)
    similar = d >= -max(SIMILAR_POINTS, noise)
    ev += (f"; avg acc {_pct(rs)} vs individual {_pct(ind)}: {d:+.2f} pts (similar or better if "
           f"at most {SIMILAR_POINTS:g} pts or the seed noise {noise:.2f} lower); partly supported "
           f"from {CACL_RATIO_PARTLY:g}×")
    if similar and ratio >= CACL_RATIO_MIN:
        verdict = "supported"
    elif similar and ratio >= CACL_RATIO_PARTLY:
        verdict = "partly supported"
    else:
        verdict = "not supported"
    return Claim(paper, text, verdict, ev)


def claims(groups: dict[str, list[Run]]) -> list[Claim]:
    """The four papers' claims, judged on one benchmark's runs."""
    return [packnet(groups), ada_qpacknet(groups), lrpet(groups), cacl(groups)]


def claims_markdown(groups: dict[str, list[Run]]) -> str:
    lines = ["| paper | claim | verdict | evidence (computed from the runs above) |",
             "|---|---|---|---|"]
    for c in claims(groups):
        lines.append(f"| {c.paper} | {c.claim} | **{c.verdict}** | {c.evidence} |")
    return "\n".join(lines)
