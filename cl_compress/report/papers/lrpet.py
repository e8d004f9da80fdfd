"""LRPET (Guo et al. 2022): projection with energy transfer beats truncate-then-fine-tune at
equal steps and stored size."""

from __future__ import annotations

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
from cl_compress.report.runs import stat


def rule(th: Thresholds) -> str:
    return (f"only at equal `budget.train_steps` and stored params within "
            f"{100 * th.size_tolerance:g} % (else not comparable); LRPET − truncate avg acc > "
            f"{th.noise_se:g} standard errors with ≥ {th.min_seeds} seeds each")


# runs written before these settings existed had these values
ABSENT_MEANS.update({"sharing": "residual", "finetune_lr_scale": 1.0})


@register_claim("lrpet", label="LRPET", rule=rule, order=2)
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
    ev = (f"avg acc {pct(et)} vs truncate {pct(tr)}: {d:+.2f} pts (noise {noise:.2f}); stored "
          f"params {pe:.0f} vs {pt:.0f}; {steps_text(et)} vs {steps_text(tr)}; truncate fine-tunes "
          f"at {tr[0].config.get('finetune_lr_scale', ABSENT_MEANS['finetune_lr_scale']):g}× lr "
          "(1: the schedule restarts at the full lr after truncation)")
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

