"""The pieces every paper's claim check shares: the one set of thresholds
(:class:`Thresholds`), the verdict record (:class:`Claim`), the registry the checks join
(:func:`register_claim`) and the helpers that pick and compare runs.

A paper's check lives in its own module under :mod:`cl_compress.report.papers`, beside the
strategy name it judges, and registers itself here; :mod:`cl_compress.report.claims` looks
the checks up. Imports run one way: :mod:`cl_compress.report.runs` → this module →
``report.papers.*`` → :mod:`cl_compress.report.claims`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
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



# --- the registry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimCheck:
    """One paper's claim check: ``check(groups, th) -> Claim`` judges one benchmark's runs;
    ``rule(th) -> str`` says its criterion (the report's thresholds table); ``order`` sorts the
    report's rows."""

    strategy: str
    check: Callable[..., Claim]
    rule: Callable[[Thresholds], str]
    label: str
    order: int


CHECKS: dict[str, ClaimCheck] = {}


def register_claim(strategy: str, *, label: str, rule: Callable[[Thresholds], str],
                   order: int) -> Callable[[Callable[..., Claim]], Callable[..., Claim]]:
    """Decorator: register ``fn(groups, th) -> Claim`` as the claim check of the paper behind
    strategy ``strategy`` (``label``: the paper's short name in the thresholds table)."""
    def deco(fn: Callable[..., Claim]) -> Callable[..., Claim]:
        if strategy in CHECKS and CHECKS[strategy].check is not fn:
            raise ValueError(f"a claim check for {strategy!r} is already registered")
        CHECKS[strategy] = ClaimCheck(strategy, fn, rule, label, order)
        return fn
    return deco


def registered() -> list[ClaimCheck]:
    """The registered checks in report order."""
    return sorted(CHECKS.values(), key=lambda c: (c.order, c.strategy))


# --- helpers --------------------------------------------------------------------------------------

# a setting missing from a run's config (written before the setting existed) had this value;
# the paper modules add their strategies' keys
ABSENT_MEANS: dict[str, object] = {}


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


def pct(runs: list[Run], key: str = "avg_acc") -> str:
    m, s, n = stat(runs, key)
    return f"{100 * m:.2f}" + (f" ± {100 * s:.2f}" if n > 1 else "") + f" % (n={n})"


def steps_text(runs: list[Run]) -> str:
    m = stat(runs, "budget.train_steps_per_task")
    e = stat(runs, "budget.extra_steps_per_task")
    if not m[2]:
        return "steps not recorded"
    return f"{m[0]:.0f} train steps/task" + (f" + {e[0]:.0f} extra" if e[2] and e[0] else "")


def series(runs: list[Run], kind: str) -> list[float]:
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


