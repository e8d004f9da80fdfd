"""Claim checks, in one place: the comparison report and every bench script
(``experiments/bench_*.py``) judge the papers' claims and the project's targets here, with
one set of thresholds (:data:`THRESHOLDS`).

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

Imports run one way: :mod:`cl_compress.report.runs` → this module → :mod:`cl_compress.report`.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from cl_compress.report.runs import Run, stat


@dataclass(frozen=True)
class Thresholds:
    """The one set of pass/fail thresholds (see the module docstring's table)."""

    zero_forgetting: float = 1e-3
    quant_drop_points: float = 2.0
    max_bits: int = 8
    cacl_ratio_share: float = 0.8
    cacl_ratio_partly: float = 1.5
    similar_points: float = 2.0
    noise_se: float = 2.0
    min_seeds: int = 2
    size_tolerance: float = 0.05
    steps_tolerance: float = 0.0
    targets: dict[str, dict[str, float]] = field(default_factory=lambda: {
        "cacl_vs_individual": {"min_ratio": 3.0, "max_points_below": 1.0},
        "lrpet_vs_individual": {"min_ratio": 3.0, "max_points_below": 1.5},
        "ada_qpacknet_vs_packnet": {"max_points_gap": 1.0, "max_code_bits": 4.0,
                                    "min_bytes_ratio": 5.0},
    })


THRESHOLDS = Thresholds()

# CACL's reported "x fewer params than individual task models" (abstract; README for the
# settings), by number of tasks; shared/reference/algorithms.md has no 10-task figure.
CACL_REFERENCES: list[tuple[int, str, float]] = [
    (20, "20-split CIFAR-100", 3.64),
    (20, "miniImageNet 20×5", 2.88),
    (5, "5-datasets (5 × 10 classes)", 5.91),
]


@dataclass
class Claim:
    paper: str
    claim: str
    verdict: str
    evidence: str


Groups = dict[str, list[Run]]


def groups_from_results(results: dict[str, list[dict[str, Any]] | dict[str, Any]],
                        paths: dict[str, Any] | None = None) -> Groups:
    """``{label: [results dict, ...]}`` (or one dict per label) as the checks' groups, for
    scripts holding ``build_and_run`` results; ``paths[label]`` (a run directory) adds the
    per-task figures of its metrics.csv."""
    out: Groups = {}
    for label, rs in results.items():
        for res in rs if isinstance(rs, list) else [rs]:
            out.setdefault(label, []).append(
                Run.from_results(res, label, (paths or {}).get(label, ".")))
    return out


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


# --- helpers --------------------------------------------------------------------------------------

# a setting missing from a run's config (written before the setting existed) had this value
ABSENT_MEANS: dict[str, object] = {"sharing": "residual", "capacity": "exclusive"}


def pick(groups: Groups, strategy: str, **where: object) -> list[Run]:
    """Runs of ``strategy`` whose config matches ``where``; the plain (default) variant
    first, else the variant with most seeds; [] when absent."""
    found = [(lab, rs) for lab, rs in groups.items() if rs and rs[0].strategy == strategy
             and all(rs[0].config.get(k, ABSENT_MEANS.get(k)) == v for k, v in where.items())]
    if not found:
        return []
    found.sort(key=lambda x: (x[0] != strategy, -len(x[1])))
    return found[0][1]


def diff_points(a: list[Run], b: list[Run], key: str = "avg_acc",
                th: Thresholds = THRESHOLDS) -> tuple[float, float, int]:
    """Mean difference ``a - b`` in points, its noise threshold (``th.noise_se`` standard
    errors, in points) and the smaller number of seeds."""
    ma, sa, na = stat(a, key)
    mb, sb, nb = stat(b, key)
    se = math.sqrt(sa ** 2 / max(na, 1) + sb ** 2 / max(nb, 1))
    return 100 * (ma - mb), 100 * th.noise_se * se, min(na, nb)


def _pct(runs: list[Run], key: str = "avg_acc") -> str:
    m, s, n = stat(runs, key)
    return f"{100 * m:.2f}" + (f" ± {100 * s:.2f}" if n > 1 else "") + f" % (n={n})"


def _steps(runs: list[Run]) -> str:
    m = stat(runs, "budget.train_steps_per_task")
    e = stat(runs, "budget.extra_steps_per_task")
    if not m[2]:
        return "steps not recorded"
    return f"{m[0]:.0f} train steps/task" + (f" + {e[0]:.0f} extra" if e[2] and e[0] else "")


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


# --- paper claims ---------------------------------------------------------------------------------

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
    free = _series(rs, "free_fraction")
    avail = [1.0] + free[:-1] if free else []
    shrinks = len(avail) > 1 and all(b < a for a, b in zip(avail, avail[1:]))
    T = rs[0].res["n_tasks"]
    learned = [statistics.fmean(t["acc_matrix"][j][j] for t in til) for j in range(T)]
    ev = (f"max forgetting over {len(rs)} seed(s) {100 * fmax:.3f} pts, min BWT {100 * bmin:+.3f} pts "
          f"(none if ≤ {100 * th.zero_forgetting:.1f}); ")
    ev += ("share of weights free when each task starts: " + ", ".join(f"{100 * a:.1f}%" for a in avail)
           if avail else "free capacity per task not logged (no `compress/free_fraction/*`)")
    ev += "; accuracy when learned: " + ", ".join(f"{100 * a:.1f}" for a in learned)
    ev += f"; {_steps(rs)}"
    verdict = ("supported" if zero and shrinks else "partly supported" if zero or shrinks
               else "not supported")
    if not avail and zero:
        verdict = "partly supported"
    return Claim(paper, text, verdict, ev)


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
        ev += (f"; beside it, not judged: avg acc {_pct(rs)} vs fp32 `packnet` {_pct(pn)} "
               f"({d:+.2f} pts, noise {noise:.2f}), stored bits {size:.2f}× PackNet's, "
               f"{_steps(rs)} vs {_steps(pn)}; policies differ, so this is not a single-factor "
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


def lrpet(groups: Groups, th: Thresholds = THRESHOLDS) -> Claim:
    paper = "LRPET (Guo et al. 2022)"
    text = ("low-rank projection + energy transfer beats truncate-then-fine-tune (equal steps "
            "and stored size)")
    et = pick(groups, "lrpet", mode="lrpet", energy_transfer=True, sharing="residual")
    tr = pick(groups, "lrpet", mode="truncate", sharing="residual")
    if not et or not tr:
        missing = [n for n, g in (("lrpet", et), ("lrpet[mode=truncate]", tr)) if not g]
        return Claim(paper, text, "not measured", f"{' and '.join(missing)} not in this sweep "
                     "(the comparison presets add the `strategy.mode=truncate` variant)")
    d, noise, n = diff_points(et, tr, th=th)
    pe, pt = stat(et, "compression.stored_params")[0], stat(tr, "compression.stored_params")[0]
    ev = (f"avg acc {_pct(et)} vs truncate {_pct(tr)}: {d:+.2f} pts (noise {noise:.2f}); stored "
          f"params {pe:.0f} vs {pt:.0f}; {_steps(et)} vs {_steps(tr)}")
    noet = pick(groups, "lrpet", mode="lrpet", energy_transfer=False, sharing="residual")
    if noet:
        d2, noise2, _ = diff_points(et, noet, th=th)
        ev += f"; energy transfer on vs off: {d2:+.2f} pts (noise {noise2:.2f})"
    se = {r.budget["train_steps"] for r in et if r.budget} if all(r.budget for r in et) else None
    st = {r.budget["train_steps"] for r in tr if r.budget} if all(r.budget for r in tr) else None
    if se is None or st is None:
        return Claim(paper, text, "not comparable", ev + "; training steps not recorded "
                     "(`budget`), so equal budgets cannot be checked")
    if se != st:
        a = "/".join(str(x) for x in sorted(se))
        b = "/".join(str(x) for x in sorted(st))
        return Claim(paper, text, "not comparable", f"unequal budget ({a} vs {b} steps); " + ev)
    rel = abs(pe - pt) / max(pe, pt, 1.0)
    if rel > th.size_tolerance:
        return Claim(paper, text, "not comparable", f"unequal stored size ({100 * rel:.1f} % "
                     f"apart, at most {100 * th.size_tolerance:g} %); " + ev)
    if n < th.min_seeds:
        return Claim(paper, text, "inconclusive", ev + f"; {n} seed(s): no noise estimate")
    verdict = "supported" if d > noise else "not supported" if d < -noise else "inconclusive"
    return Claim(paper, text, verdict, ev)


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
    ev += (f"; avg acc {_pct(rs)} vs individual {_pct(ind)}: {d:+.2f} pts (similar or better if "
           f"at most {th.similar_points:g} pts or the seed noise {noise:.2f} lower); partly "
           f"supported from {th.cacl_ratio_partly:g}×")
    if similar and ratio >= need:
        verdict = "supported"
    elif similar and ratio >= th.cacl_ratio_partly:
        verdict = "partly supported"
    else:
        verdict = "not supported"
    return Claim(paper, text, verdict, ev)


def claims(groups: Groups, th: Thresholds = THRESHOLDS) -> list[Claim]:
    """The four papers' claims, judged on one benchmark's runs."""
    return [packnet(groups, th), ada_qpacknet(groups, th), lrpet(groups, th), cacl(groups, th)]


def claims_markdown(groups: Groups, th: Thresholds = THRESHOLDS) -> str:
    lines = ["| paper | claim | verdict | evidence (computed from the runs above) |",
             "|---|---|---|---|"]
    for c in claims(groups, th):
        lines.append(f"| {c.paper} | {c.claim} | **{c.verdict}** | {c.evidence} |")
    return "\n".join(lines)


def thresholds_markdown(th: Thresholds = THRESHOLDS) -> str:
    """The thresholds every verdict above uses (for the report)."""
    rows = [
        ("PackNet", f"max forgetting and −BWT over seeds ≤ {100 * th.zero_forgetting:g} pt, and the "
                    "share of free weights when each task starts strictly decreasing"),
        ("Ada-QPacknet", f"every task ≤ {th.max_bits} bits and mean test-accuracy drop of the same "
                         f"sub-network before → after quantisation ≤ {th.quant_drop_points:g} pts "
                         "(`acc_before_compression[t] − acc_matrix[t][t]`, over tasks and seeds); "
                         "the PackNet comparison and its differing policies are shown, not judged"),
        ("LRPET", f"only at equal `budget.train_steps` and stored params within "
                  f"{100 * th.size_tolerance:g} % (else not comparable); LRPET − truncate avg acc > "
                  f"{th.noise_se:g} standard errors with ≥ {th.min_seeds} seeds each"),
        ("CACL", f"ratio vs individual ≥ {th.cacl_ratio_share:g} × the paper's figure for the "
                 f"nearest task count ({', '.join(f'{n} tasks {r}×' for n, _, r in CACL_REFERENCES)}) "
                 f"at accuracy at most {th.similar_points:g} pts (or the seed noise) below "
                 f"individual; partly from {th.cacl_ratio_partly:g}×"),
        ("budget", "every strategy of a benchmark has the same train steps per task (`budget`), "
                   "except those the sweep's `budget_exceptions` names"),
    ]
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
