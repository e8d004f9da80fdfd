"""Each paper's verdict under the common protocol and under its authors' recipe
(``recipe_*`` presets), at one reduced CPU budget (issue 24).

For every ``recipe_<paper>`` preset, the runs its paper's claim check needs are trained twice on
the preset's benchmark, at the same ``--steps`` optimiser steps per task and
``--train-per-task`` training images per task:

* **common protocol**: ``protocol.yaml``'s settings (Adam 1e-3 at constant lr, batch 128, the
  strategies' defaults and the protocol's strategy overrides);
* **authors' recipe**: the preset's optimiser, schedule, batch size and strategy overrides.

The budget is reduced from the presets' (1500–2000 steps per task) and far from the papers',
and each row says so; the verdicts come from the report's own claim checks
(``cl_compress.report.papers``) and can come out either way.

Usage: python -m experiments.recipes_small [--papers ada_qpacknet,packnet,cacl,lrpet]
       [--steps 300] [--train-per-task 3000] [--seeds 0] [--lrpet-seeds 0,1] [--out PATH]
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from cl_compress.report import claims

from . import harness

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "cl_compress" / "launch" / "presets"
RUNS = REPO / "runs" / "recipes_small"
COMMON = ["model=mlp", "logger=none", "trainer.progress_bar=false", "train.epochs=null"]
# what each paper's claim check needs (label -> strategy, extra overrides); the variants are
# the presets' own
NEEDS = {
    "packnet": {"packnet": ("packnet", [])},
    "cacl": {"cacl": ("cacl", []), "individual": ("individual", []),
             "cacl-average": ("cacl", ["strategy.growth=authors_average"])},
    "lrpet": {"lrpet": ("lrpet", []), "lrpet-truncate": ("lrpet", ["strategy.mode=truncate"])},
    "ada_qpacknet": {"ada_qpacknet": ("ada_qpacknet", [])},
}


def _preset(name: str) -> dict:
    return yaml.safe_load((PRESETS / f"{name}.yaml").read_text())


def _strip(ovs: list[str], *keys: str) -> list[str]:
    return [o for o in ovs if not any(o.startswith(k + "=") for k in keys)]


def settings(paper: str, regime: str, bench: str, args) -> tuple[list[str], dict[str, list[str]]]:
    """(overrides, strategy overrides) of one regime, at the reduced budget."""
    p = _preset("protocol" if regime == "protocol" else f"recipe_{paper}")
    budget = [f"train.steps_per_task={args.steps}", f"benchmark.max_train_per_task={args.train_per_task}"]
    ov = _strip(list(p.get("overrides") or []), "train.steps_per_task", "benchmark.max_train_per_task")
    bench_ov = _strip(list((p.get("benchmark_overrides") or {}).get(bench) or []),
                      "benchmark.max_train_per_task")
    return ov + bench_ov + budget, dict(p.get("strategy_overrides") or {})


def run_paper(paper: str, args) -> list[str]:
    recipe = _preset(f"recipe_{paper}")
    bench = recipe["benchmarks"][0]
    rows = []
    for regime in ("protocol", "recipe"):
        ov, sov = settings(paper, regime, bench, args)
        results: dict[str, list[dict]] = {}
        dirs: dict[str, Path] = {}  # per label, the first seed's run (its metrics.csv per-task figures)
        for label, (strategy, extra) in NEEDS[paper].items():
            seeds = args.lrpet_seeds if paper == "lrpet" else args.seeds
            for s in [int(x) for x in seeds.split(",")]:
                full = COMMON + [f"benchmark={bench}", f"strategy={strategy}", *ov,
                                 *sov.get(strategy, []), *extra, f"seed={s}"]
                print(f"-- {paper} {regime} {label} s{s}", flush=True)
                run_dir = RUNS / paper / regime / f"{label}_s{s}"
                dirs.setdefault(label, run_dir)
                results.setdefault(label, []).append(harness.run_inprocess(full, run_dir))
        c = claims.check(paper)(claims.groups_from_results(results, dirs))
        steps = {lab: rs[0]["budget"]["train_steps"] / rs[0]["n_tasks"] for lab, rs in results.items()}
        train = next(iter(results.values()))[0]["config"]["train"]
        opt = (f"{train['optimizer']} lr {train['lr']:g}, wd {train.get('weight_decay', 0):g}, "
               f"batch {train['batch_size']}, scheduler {train.get('scheduler', 'none')}"
               + (f" {train.get('milestones')}" if train.get("scheduler") not in (None, "none") else ""))
        rows.append(f"| {c.paper} | {regime} | {bench} | {opt} | "
                    f"{', '.join(f'`{k}` {v:.0f}' for k, v in steps.items())} | **{c.verdict}** | "
                    f"{c.evidence} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.recipes_small", __doc__, "recipes-<date>.md")
    ap.add_argument("--papers", default="ada_qpacknet,packnet,cacl,lrpet")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--train-per-task", type=int, default=3000)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--lrpet-seeds", default="0,1", help="LRPET's check needs 2 seeds a side")
    args = ap.parse_args(argv)
    harness.quiet_lightning()
    t0 = time.perf_counter()
    rows = ["| paper | regime | benchmark | optimiser (from results.json) | train steps/task | "
            "verdict | evidence (the report's claim check) |", "|---|---|---|---|---|---|---|"]
    papers = args.papers.split(",")
    for i, paper in enumerate(papers):
        rows += run_paper(paper, args)
        write(rows, args, argv, (time.perf_counter() - t0) / 60,
              "" if i == len(papers) - 1 else f"partial: {', '.join(papers[:i + 1])} of {args.papers}")
    return 0


def write(rows: list[str], args, argv, wall: float, partial: str) -> None:
    """The results file so far (rewritten after each paper, so an interrupted run keeps its
    finished papers and says so)."""
    print("\n".join(rows))
    harness.write_results(
        harness.header(
            "Verdicts under the common protocol and under each paper's recipe (reduced budget)",
            "experiments.recipes_small", argv,
            f"budget: {args.steps} optimiser steps per task and {args.train_per_task} training "
            f"images per task for every run, REDUCED from the presets' 1500–2000 steps per task "
            f"(and far from the papers': PackNet 20 + 10 epochs, CACL ~8,000 steps per task, "
            f"LRPET 400 epochs, Ada-QPacknet 10 + 30 search epochs); seeds {args.seeds} "
            f"(LRPET {args.lrpet_seeds}); MLP 784-256-256, 5 tasks",
            "common protocol: `protocol.yaml` (Adam 1e-3 constant, batch 128); recipe: "
            "`recipe_<paper>.yaml` (the authors' optimiser, schedule, batch and strategy rules)",
            f"whole command: {wall:.1f} min" + (f" ({partial})" if partial else ""))
        + "\n".join(rows) + "\n", args.out, f"recipes-{harness.today()}.md")


if __name__ == "__main__":
    raise SystemExit(main())
