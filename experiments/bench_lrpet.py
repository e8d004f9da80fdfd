"""``make bench-lrpet``: LRPET vs its ablations and ``individual`` on split_fmnist (task-IL).

One process runs, on the same stream, model (MLP 784-256-256), optimiser and seed:

* ``individual`` (one dense model per task: the accuracy reference and size denominator);
* for every rank ``k`` in ``--ranks`` (explicit rank of every body layer, per task):
  LRPET (projection + energy transfer), LRPET without energy transfer, and the baseline
  "train dense, truncate by SVD, fine-tune the factors" (``strategy.mode=truncate``), with
  the same number of epochs per task (the baseline: ``epochs - 1`` dense + 1 fine-tuning);

and prints / saves a Markdown table with accuracy, stored parameters, artifact bytes and
training time with projection (LRPET) vs without (the dense phase of the baseline), plus
the directly timed projection cost.

Usage: python -m experiments.bench_lrpet [--ranks 32,2] [--epochs 2] [--max-train N]

``--single-task``: the papers' own setting, one task. The whole of Fashion-MNIST as ONE
10-class task (``benchmark.n_tasks=1``), the LRPET authors' optimiser recipe, and at equal
optimiser steps: dense (``naive``: one task, one dense model), LRPET and
truncate-then-fine-tune at the same rank k (hence the same stored size); a table with steps,
test accuracy, stored parameters and forward FLOPs per image. The baseline runs twice: its
fine-tuning at ``strategy.finetune_lr_scale`` 0.1 (the default) and at 1 (the phase restarts
its schedule at the full lr right after truncation, the behaviour before the setting existed).

Usage: python -m experiments.bench_lrpet --single-task [--steps 1500] [--ranks 51,8] [--seeds 0,1,2]

``--sharing``: the default ``strategy=lrpet`` run on split_fmnist with ``sharing=residual``
and ``sharing=independent`` (accuracy, stored params) and, per task and layer, the
energy-transfer factor alpha and the removed energy of its projections.

Usage: python -m experiments.bench_lrpet --sharing [--seed 0] [--steps N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cl_compress.compose import compose_config
from cl_compress.engine.system import NonFiniteLossError
from cl_compress.report import claims
from experiments import harness

LRPET, NO_ET, TRUNC = "LRPET", "LRPET, no energy transfer", "dense -> SVD truncate -> fine-tune"
COMMON = ["benchmark=split_fmnist", "benchmark.scenario=task", "model=mlp", "logger=none",
          "trainer.progress_bar=false", "train.optimizer=adam", "train.lr=0.001"]


def run(name: str, overrides: list[str], run_root: Path) -> dict:
    print(f"-- {name}: {' '.join(overrides)}", flush=True)
    return harness.run_inprocess(COMMON + overrides, run_root / name.replace(" ", "_"))


def row(regime: str, label: str, k: str, epochs: str, r: dict, ref: dict) -> dict:
    c, x = r["compression"], r.get("strategy_extra") or {}
    per_epoch = x.get("seconds_per_epoch", {})
    return {
        "regime": regime, "method": label, "k": k, "epochs": epochs, "avg_acc": 100 * r["avg_acc"],
        "bwt": 100 * r["bwt"], "params": c["stored_params"],
        "fewer": ref["compression"]["stored_params"] / c["stored_params"],
        "bytes": c["model_bytes"], "train_s": r["train_seconds"],
        "s_epoch": per_epoch.get("lrpet", per_epoch.get("dense")),
        "proj_s": x.get("projection_seconds"), "projections": x.get("projections"),
        "n_epochs": sum(x.get("phase_epochs", {}).values()), "res": r,
    }


def table(rows: list[dict]) -> str:
    head = ("| train images/task | method | rank k | epochs/task | avg_acc % | BWT % | stored params "
            "| x fewer than individual | model_bytes | train s | s/epoch (training phase) "
            "| projection s |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        s_ep = "-" if r["s_epoch"] is None else f"{r['s_epoch']:.1f}"
        proj = "-" if not r["projections"] else f"{r['proj_s']:.2f} ({r['projections']} proj.)"
        lines.append(f"| {r['regime']} | {r['method']} | {r['k']} | {r['epochs']} | {r['avg_acc']:.2f} | "
                     f"{r['bwt']:+.2f} | {r['params']:,} | {r['fewer']:.2f} | {r['bytes']:,} | "
                     f"{r['train_s']:.0f} | {s_ep} | {proj} |")
    return "\n".join(lines)


def compare(rows: list[dict], regime: str, ranks: list[int]) -> list[str]:
    """Claim lines for one data regime: LRPET vs truncate+fine-tune, ET on vs off, timing."""
    out = []
    for k in ranks:
        by = {r["method"]: r for r in rows if r["k"] == str(k) and r["regime"] == regime}
        et, no, tr = by[LRPET], by[NO_ET], by[TRUNC]
        d_tr, d_et = et["avg_acc"] - tr["avg_acc"], et["avg_acc"] - no["avg_acc"]
        paper = claim(et, tr, no)
        out.append(f"- {regime} images/task, k={k}: LRPET {et['avg_acc']:.2f} vs truncate+fine-tune "
                   f"{tr['avg_acc']:.2f} ({d_tr:+.2f}); energy transfer on vs off {et['avg_acc']:.2f} "
                   f"vs {no['avg_acc']:.2f} ({d_et:+.2f}). Shared check (`cl_compress.report.papers.lrpet`): "
                   f"**{paper.verdict}** ({paper.evidence}).")
        if et["s_epoch"] and et["n_epochs"]:
            bare = (et["s_epoch"] * et["n_epochs"] - et["proj_s"]) / et["n_epochs"]
            share = 100 * et["proj_s"] / (et["s_epoch"] * et["n_epochs"])
            out.append(f"- {regime} images/task, k={k}, training time: LRPET {et['s_epoch']:.2f} s/epoch "
                       f"with projection, {bare:.2f} s/epoch without it (same run, projection time "
                       f"removed; {et['projections']} projections took {et['proj_s']:.2f} s = "
                       f"{share:.1f} %); the baseline's dense phase (no projection, same forward) "
                       f"ran at {tr['s_epoch']:.2f} s/epoch.")
    return out


def claim(et: dict, tr: dict, no: dict) -> claims.Claim:
    """LRPET's paper claim on one rank's three runs, by the shared check (equal steps and
    stored size required; one seed gives "inconclusive")."""
    return claims.check("lrpet")(claims.groups_from_results(
        {"lrpet": et["res"], "lrpet[mode=truncate]": tr["res"], "lrpet[no-et]": no["res"]}))


def size_check(rows: list[dict], k: int) -> tuple[bool, str]:
    """The project's size target (``THRESHOLDS.targets["lrpet_vs_individual"]``)."""
    ind = rows[0]
    head = next(r for r in rows if r["method"] == LRPET and r["k"] == str(k)
                and r["regime"] == ind["regime"])
    g = claims.groups_from_results({"lrpet": head["res"], "individual": ind["res"]})
    ok, line = claims.size_target(g["lrpet"], g["individual"], "lrpet_vs_individual")
    return ok, f"- Size/accuracy target (LRPET at k={k}, {ind['regime']} images/task): {line}."


def regime(n_train: int | None, ranks: list[int], args, root: Path) -> list[dict]:
    """individual + the three low-rank methods at every rank, on ``n_train`` images/task."""
    common = [f"seed={args.seed}", f"train.epochs={args.epochs}", "train.steps_per_task=null"]
    if n_train:
        common.append(f"benchmark.max_train_per_task={n_train}")
    tag = str(n_train or "all")
    ind = run(f"individual n{tag}", common + ["strategy=individual"], root)
    rows = [row(tag, "individual", "full", str(args.epochs), ind, ind)]
    for k in ranks:
        lr = common + ["strategy=lrpet", f"strategy.rank={k}"]
        for label, ov, ep in [
            (LRPET, lr, str(args.epochs)),
            (NO_ET, lr + ["strategy.energy_transfer=false"], str(args.epochs)),
            (TRUNC, lr + ["strategy.mode=truncate", "strategy.finetune_epochs=1",
                          f"train.epochs={args.epochs - 1}"], f"{args.epochs - 1} + 1"),
        ]:
            name = f"{label.split(',')[0].split(' ')[0]}{'-noet' if label == NO_ET else ''} k{k} n{tag}"
            rows.append(row(tag, label, str(k), ep, run(name, ov, root), ind))
    return rows


def reading(size_line: str, regimes: list[tuple[str, list[dict], list[int]]]) -> str:
    """A one-paragraph summary generated from the measured figures (no hard-coded result)."""
    parts = [size_line.removeprefix("- ")]
    for tag, rows, ranks in regimes:
        wins_tr = wins_et = 0
        gaps, verdicts = [], []
        for k in ranks:
            by = {r["method"]: r for r in rows if r["k"] == str(k)}
            wins_tr += by[LRPET]["avg_acc"] > by[TRUNC]["avg_acc"]
            wins_et += by[LRPET]["avg_acc"] > by[NO_ET]["avg_acc"]
            gaps.append(f"k={k}: {by[LRPET]['avg_acc'] - by[TRUNC]['avg_acc']:+.2f} vs truncate, "
                        f"{by[LRPET]['avg_acc'] - by[NO_ET]['avg_acc']:+.2f} vs no transfer")
            verdicts.append(f"k={k}: {claim(by[LRPET], by[TRUNC], by[NO_ET]).verdict}")
        parts.append(
            f"With {tag} training images per task"
            + ("" if tag == "all" else f" ({-(-int(tag) // 128)} optimiser steps per epoch)")
            + f", LRPET has the higher accuracy than truncate+fine-tune at {wins_tr} of "
            f"{len(ranks)} rank(s) and energy transfer than no transfer at {wins_et} of "
            f"{len(ranks)} ({'; '.join(gaps)}); the shared claim check (`cl_compress.report.papers.lrpet`: "
            f"equal steps and stored size, a difference beyond the seed noise) says "
            f"{', '.join(verdicts)}.")
    parts.append("All figures are one seed. The projection share of training time is timed "
                 "directly and is the figure to read; s/epoch differs between runs mostly because "
                 "the 2-core machine is shared with other jobs.")
    return " ".join(parts)


# The LRPET authors' CIFAR recipe (cifar10_train.py; see cl_compress/launch/presets/recipe_lrpet.yaml):
# SGD 0.1, momentum 0.9, wd 1e-4, x0.1 at 50 % and 75 % of each phase, batch 128.
RECIPE = ["train.optimizer=sgd", "train.lr=0.1", "train.momentum=0.9", "train.weight_decay=0.0001",
          "train.scheduler=multistep", "train.milestones=[0.5,0.75]", "train.batch_size=128"]
SINGLE = ["benchmark=split_fmnist", "benchmark.n_tasks=1", "benchmark.scenario=task", "model=mlp",
          "logger=none", "trainer.progress_bar=false", "train.epochs=null"]
DENSE = "dense (one model, no compression)"
TRUNC_FULL = "dense -> SVD truncate -> fine-tune at the full lr (finetune_lr_scale=1)"


def mlp_flops(sizes: list[int], ranks: list[int | None], n_out: int) -> int:
    """Forward FLOPs per image (2 per multiply-add) of an MLP ``sizes[0] -> ... -> sizes[-1]``
    and its head: a rank-``k`` layer costs ``k * (in + out)`` multiply-adds (two thin
    factors), a dense one ``in * out``; biases and activations are not counted.

    >>> mlp_flops([784, 256, 256], [None, None], 10), mlp_flops([784, 256, 256], [52, 52], 10)
    (537600, 166528)
    """
    macs = sum(k * (i + o) if k else i * o for (i, o), k in zip(zip(sizes, sizes[1:]), ranks))
    return 2 * (macs + sizes[-1] * n_out)


def _mean_sd(xs: list[float]) -> str:
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return f"{m:.2f}"
    sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5
    return f"{m:.2f} ± {sd:.2f}"


def single_task(args) -> None:
    """The ``--single-task`` comparison (see the module docstring)."""
    t0 = time.perf_counter()
    root = Path(args.run_root) / "single_task"
    ranks = [int(k) for k in args.ranks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = args.steps or 1500
    common = SINGLE + RECIPE + [f"train.steps_per_task={steps}"]
    sizes = [784] + list(compose_config(common)["model"]["hidden"])
    rows: dict[tuple[str, str], dict] = {}

    def add(label: str, k: int | None, ov: list[str], seed: int) -> None:
        tag = label.split(' ')[0] + ("-fulllr" if label == TRUNC_FULL else "")
        name = f"single {tag}{'' if k is None else f' k{k}'} s{seed}"
        key = (label, "full" if k is None else str(k))
        row = rows.setdefault(key, {"method": label, "k": key[1], "acc": {}, "train_s": [],
                                    "diverged": {}, "flops": mlp_flops(sizes, [k] * (len(sizes) - 1), 10)})
        try:
            r = run(name, common + ov + [f"seed={seed}"], root)
        except NonFiniteLossError as e:  # a divergence is a result: recorded, not hidden
            row["diverged"][seed] = str(e).split(";")[0]
            print(f"   diverged: {e}", flush=True)
            return
        assert r["n_tasks"] == 1 and len(r["acc_matrix"][0]) == 1, "expected ONE task"
        b = r["budget"]
        meta = {"steps": b["train_steps"],
                "phases": " + ".join(f"{n} {p['steps']}" for n, p in b["per_task"][0]["phases"].items()),
                "epochs": b["per_task"][0]["epochs"], "params": r["compression"]["stored_params"],
                "projections": (r.get("strategy_extra") or {}).get("projections")}
        if any(row.get(m, v) != v for m, v in meta.items() if m in ("steps", "params")):
            raise SystemExit(f"{name}: steps or stored params differ between seeds")
        row.update(meta)
        row["acc"][seed] = 100 * r["acc_matrix"][0][0]
        row["train_s"].append(r["train_seconds"])

    for seed in seeds:
        add(DENSE, None, ["strategy=naive"], seed)
        for k in ranks:
            lr = ["strategy=lrpet", f"strategy.rank={k}"]
            add(LRPET, k, lr, seed)
            add(TRUNC, k, lr + ["strategy.mode=truncate"], seed)
            add(TRUNC_FULL, k, lr + ["strategy.mode=truncate", "strategy.finetune_lr_scale=1.0"], seed)
    head = ("| method | rank k | optimiser steps (phases) | epochs | test acc % (mean ± sd) "
            "| per seed | stored params | x fewer than dense | FLOPs/image | LRPET projections "
            "| train s (mean) |")
    lines = [head, "|" + "---|" * 11]
    dense = rows[(DENSE, "full")]
    for r in rows.values():
        if not r["acc"]:
            lines.append(f"| {r['method']} | {r['k']} | diverged at every seed |" + " |" * 8)
            continue
        proj = "-" if not r["projections"] or r["method"] != LRPET else str(r["projections"])
        per_seed = ", ".join(f"{r['acc'][sd]:.2f}" if sd in r["acc"] else f"s{sd}: diverged" for sd in seeds)
        lines.append(f"| {r['method']} | {r['k']} | {r['steps']:,} ({r['phases']}) | {r['epochs']:.2f} | "
                     f"{_mean_sd(list(r['acc'].values()))} | {per_seed} | "
                     f"{r['params']:,} | {dense['params'] / r['params']:.2f} | {r['flops']:,} | {proj} | "
                     f"{sum(r['train_s']) / len(r['train_s']):.0f} |")
    text = "\n".join(lines)
    found = []
    for r in rows.values():
        for sd, msg in r["diverged"].items():
            found.append(f"- {r['method']}, k={r['k']}, seed {sd}: diverged ({msg}); left out of its mean.")
    for k, trl in [(k, trl) for k in ranks for trl in (TRUNC, TRUNC_FULL)]:
        et, tr = rows[(LRPET, str(k))], rows[(trl, str(k))]
        what = "truncate-then-fine-tune" + (" at the full lr" if trl == TRUNC_FULL else "")
        if not et["acc"] or not tr["acc"]:
            found.append(f"- k={k}, {what}: no comparison (a method diverged at every seed).")
            continue
        if et["params"] != tr["params"] or et["steps"] != tr["steps"]:
            raise SystemExit(f"k={k}: LRPET and truncate differ in stored params or steps: not comparable")
        both = [sd for sd in seeds if sd in et["acc"] and sd in tr["acc"]]
        diffs = [et["acc"][sd] - tr["acc"][sd] for sd in both]
        cmp = (f"LRPET - truncate per seed {_mean_sd(diffs)} points, LRPET higher at "
               f"{sum(d > 0 for d in diffs)} of {len(diffs)} seed(s) where both finished") if diffs \
            else "no seed where both finished"
        found.append(f"- k={k} ({et['params']:,} stored params each, {et['steps']:,} steps each): LRPET "
                     f"{_mean_sd(list(et['acc'].values()))} % (n={len(et['acc'])}) vs "
                     f"{what} {_mean_sd(list(tr['acc'].values()))} % "
                     f"(n={len(tr['acc'])}); {cmp}; dense {_mean_sd(list(dense['acc'].values()))} % "
                     f"at {dense['params']:,} params.")
    wall = time.perf_counter() - t0
    print("\n" + text + "\n\n" + "\n".join(found) + f"\n\nwall time {wall / 60:.1f} min")
    today = harness.today()
    harness.write_results(
        f"# LRPET on one task: Fashion-MNIST, 10 classes\n\nCommand: `{_record_cmd(args)}`  \n"
        f"Date: {today}  \nMachine: {harness.machine(shared=True)} (train s is noisy); whole "
        f"command {wall / 60:.1f} min.  \n"
        f"Setup: the whole Fashion-MNIST (60,000 train / 10,000 test images) as "
        f"one 10-class task (`benchmark=split_fmnist benchmark.n_tasks=1`), MLP 784-256-256 + a 10-way "
        f"head, the LRPET authors' recipe (SGD 0.1, momentum 0.9, weight decay 1e-4, x0.1 at 50 % and "
        f"75 % of each phase, batch 128), seeds {args.seeds}, {steps:,} optimiser steps for every "
        f"method. Rank k is explicit and the same for both body layers (51 = the authors' "
        f"k = int(n - 0.8 n) for n = 256, the same as this project's int(0.2 n)). LRPET "
        f"projects at every epoch end and once more before "
        f"storing; truncate-then-fine-tune trains dense, truncates by SVD and fine-tunes the thin "
        f"factors, the steps split between its phases as its default phase epochs (2 : 1) say. "
        f"Stored params: body factors (k*(in+out) per layer) + biases + head; FLOPs: 2 per "
        f"multiply-add of the layers and head, per image. Scope: "
        f"{dense.get('epochs', float('nan')):.1f} epochs, a "
        f"short budget against the authors' 400 epochs of ResNet-56 on CIFAR-10 (93.27 % at 0.39 M "
        f"params), so this checks the paper's ordering (LRPET vs truncate at equal size and "
        f"steps), not its figure. Every phase restarts its optimiser and schedule: the baseline's "
        f"fine-tuning runs at `finetune_lr_scale` x lr = 0.01 (the default, as PackNet's retrain) "
        f"and, as a second row, at the full lr 0.1 (scale 1); a divergence is listed as such."
        f"\n\n{text}\n\n## Checks\n\n" + "\n".join(found) + "\n",
        args.out, f"lrpet-single-task-{today}.md")


def _record_cmd(args) -> str:
    argv = list(sys.argv[1:] if args.argv is None else args.argv)
    if "--run-root" in argv:  # where the runs went does not change a figure: not recorded
        i = argv.index("--run-root")
        del argv[i:i + 2]
    return harness.command("experiments.bench_lrpet", argv)


def sharing(args) -> None:
    """``--sharing``: the default LRPET run on split_fmnist (default budget and optimiser),
    ``sharing=residual`` vs ``independent``, and every projection's alpha and removed energy."""
    t0 = time.perf_counter()
    root = Path(args.run_root) / "sharing"
    base = ["benchmark=split_fmnist", "benchmark.scenario=task", "model=mlp", "logger=none",
            "trainer.progress_bar=false", "strategy=lrpet", f"seed={args.seed}"]
    base += [f"train.steps_per_task={args.steps}"] if args.steps else []
    res = {sh: run(f"sharing {sh}", base + [f"strategy.sharing={sh}"], root)
           for sh in ("residual", "independent")}
    lines = ["| sharing | optimiser steps/task | avg acc % | final acc per task % | BWT % | stored params "
             "| train s |", "|" + "---|" * 7]
    for sh, r in res.items():
        b = r["budget"]
        final = ", ".join(f"{100 * a:.2f}" for a in r["acc_matrix"][-1])
        lines.append(f"| {sh} | {', '.join(str(x) for x in b['train_steps_per_task'])} | "
                     f"{100 * r['avg_acc']:.2f} | {final} | "
                     f"{100 * r['bwt']:+.2f} | {r['compression']['stored_params']:,} | "
                     f"{r['train_seconds']:.0f} |")
    proj = ["| sharing | task | layer | projections | alpha mean | alpha max | alpha last "
            "| removed mean % | removed max % | removed first % | removed last % |", "|" + "---|" * 11]
    found = []
    for sh, r in res.items():
        stats = r["strategy_extra"]["projection_stats"]
        for t, layers in stats.items():
            for name, st in layers.items():
                proj.append(f"| {sh} | {t} | body.{name} | {st['count']} | {st['alpha_mean']:.4f} | "
                            f"{st['alpha_max']:.4f} | {st['alpha_last']:.4f} | "
                            f"{100 * st['removed_mean']:.2f} | {100 * st['removed_max']:.2f} | "
                            f"{100 * st['removed_first']:.2f} | {100 * st['removed_last']:.2f} |")
        later = [st for t, la in stats.items() if t != "0" for st in la.values()]
        first = list(stats["0"].values())
        found.append(
            f"- {sh}: task 0 removes {100 * min(s['removed_mean'] for s in first):.2f}-"
            f"{100 * max(s['removed_mean'] for s in first):.2f} % of the energy per projection on "
            f"average (first projection {100 * max(s['removed_first'] for s in first):.1f} %, alpha up "
            f"to {max(s['alpha_max'] for s in first):.3f}); tasks 1-{len(stats) - 1}: "
            f"{100 * min(s['removed_mean'] for s in later):.2f}-"
            f"{100 * max(s['removed_mean'] for s in later):.2f} % on average, at most "
            f"{100 * max(s['removed_max'] for s in later):.2f} %, alpha "
            f"<= {max(s['alpha_max'] for s in later):.4f}; the last projection of a task removes "
            f"{100 * max(s['removed_last'] for s in first):.2f} % (task 0) vs at most "
            f"{100 * max(s['removed_last'] for s in later):.2f} % (later tasks).")
    a, b = res["residual"], res["independent"]
    cfg = a["config"]
    found.append(f"- residual vs independent: avg acc {100 * a['avg_acc']:.2f} vs {100 * b['avg_acc']:.2f} % "
                 f"({100 * (a['avg_acc'] - b['avg_acc']):+.2f} points), stored params "
                 f"{a['compression']['stored_params']:,} vs {b['compression']['stored_params']:,}.")
    wall = time.perf_counter() - t0
    text = "\n".join(lines) + "\n\n## Projections (alpha, removed energy)\n\n" + "\n".join(proj)
    print("\n" + text + "\n\n" + "\n".join(found))
    today = harness.today()
    harness.write_results(
        f"# LRPET on split_fmnist: residual vs independent, alpha and removed energy\n\n"
        f"Command: `{_record_cmd(args)}`  \nDate: {today}  \nMachine: {harness.machine(shared=True)}; "
        f"whole command {wall / 60:.1f} min.  \nSetup: the default "
        f"`strategy=lrpet` run ({cfg['train']['optimizer']} lr {cfg['train']['lr']}, batch "
        f"{cfg['train']['batch_size']}, {cfg['train']['steps_per_task']} steps per task, MLP "
        f"{cfg['model']['hidden']}, rank_ratio {cfg['strategy']['rank_ratio']}: k per layer "
        f"{a['strategy_extra']['ranks']}, projection at every epoch end and before storing), "
        f"split_fmnist task-IL, seed {args.seed}. `residual`: later tasks train a rank-k residual on "
        f"the frozen sum (this project's continual reading); `independent`: every task its own "
        f"rank-k model from a fresh initialisation. alpha and removed energy from results.json "
        f"`strategy_extra.projection_stats` (removed: share of the weight's energy in the cut "
        f"tail at each projection).\n\n{text}\n\n## Checks\n\n" + "\n".join(found) + "\n",
        args.out, f"lrpet-sharing-{today}.md")


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.bench_lrpet", __doc__, "lrpet-<date>.md; --single-task: "
                        "lrpet-single-task-<date>.md; --sharing: lrpet-sharing-<date>.md")
    ap.add_argument("--ranks", default=None, help="comma-separated explicit ranks k (first: "
                                                  "the size/accuracy target); default 32,2 "
                                                  "(--single-task: 51,8)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per task (every method)")
    ap.add_argument("--max-train", type=int, default=None, help="subsample each task's train set")
    ap.add_argument("--short-train", type=int, default=300,
                    help="second regime: images per task (few steps); 0 skips it")
    ap.add_argument("--short-ranks", default="4", help="ranks of the second regime")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-root", default="runs/bench_lrpet", help="run directories (git-ignored)")
    ap.add_argument("--single-task", action="store_true",
                    help="one 10-class Fashion-MNIST task: dense vs LRPET vs truncate+fine-tune")
    ap.add_argument("--steps", type=int, default=None,
                    help="--single-task: optimiser steps per method (default 1500); --sharing: "
                         "optimiser steps per task (default: train.steps_per_task)")
    ap.add_argument("--seeds", default="0,1,2", help="--single-task: comma-separated seeds")
    ap.add_argument("--sharing", action="store_true",
                    help="default LRPET on split_fmnist: sharing=residual vs independent, alpha "
                         "and removed energy per projection")
    args = ap.parse_args(argv)
    args.argv = argv
    harness.quiet_lightning()
    if args.sharing:
        sharing(args)
        return 0
    if args.single_task:
        args.ranks = args.ranks or "51,8"
        single_task(args)
        return 0
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the baseline needs a dense and a fine-tuning epoch)")
    root = Path(args.run_root)
    ranks = [int(k) for k in (args.ranks or "32,2").split(",")]
    main_rows = regime(args.max_train, ranks, args, root)
    regimes = [(str(args.max_train or "all"), main_rows, ranks)]
    if args.short_train:
        short = [int(k) for k in args.short_ranks.split(",")]
        regimes.append((str(args.short_train), regime(args.short_train, short, args, root), short))
    _, size_line = size_check(main_rows, ranks[0])
    found = [size_line] + [line for tag, rows, rk in regimes for line in compare(rows, tag, rk)]
    text = table([r for _, rows, _ in regimes for r in rows])
    summary = reading(size_line, regimes)
    print("\n" + text + "\n\n" + "\n".join(found) + "\n\n" + summary)
    today = harness.today()
    harness.write_results(
        f"# LRPET on split_fmnist (task-incremental)\n\nCommand: `{_record_cmd(args)}`  \n"
        f"Date: {today}  \nMachine: {harness.machine(shared=True)} (timings are noisy).  \n"
        f"Setup: MLP 784-256-256, Adam lr 1e-3, batch 128, seed "
        f"{args.seed}, {args.epochs} epochs per task; rank k is per layer and per task (each task "
        f"stores k*(in+out) factors per layer); LRPET projects at every epoch end; the baseline "
        f"trains dense for {args.epochs - 1} epoch(s), truncates by SVD and fine-tunes the thin "
        f"factors for 1 epoch (same budget).\n\n{text}\n\n## Checks\n\n" + "\n".join(found)
        + f"\n\n## Reading\n\n{summary}\n", args.out, f"lrpet-{today}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
