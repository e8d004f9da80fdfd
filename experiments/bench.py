"""``make bench``: measured performance figures, printed and saved as Markdown.

(a) framework overhead: our engine (ContinualSystem + a Lightning Trainer per phase) versus
    a minimal plain-PyTorch loop and a minimal LightningModule, same model, same initial
    weights, same batches (the default MLP, then the small CNN for a heavier step);
(b) per strategy: wall time of a split_fmnist run, the share spent in strategy work
    (pruning, SVD/projection, k-means ...), and the hottest functions inside it (cProfile);
(c) ours versus Avalanche 0.6 on the same stream and budget: Naive over several seeds
    (PackNet is compared by experiments/bench_packnet.py).

Usage: python -m experiments.bench [--quick] [--strategies a,b] [--out PATH]
"""

from __future__ import annotations

import cProfile
import io
import os
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from cl_compress import metrics
from cl_compress.benchmarks import BenchmarkSpec, build_stream, make_loader
from cl_compress.compose import compose_config
from cl_compress.engine.loop import TrainerSettings, make_trainer
from cl_compress.engine.system import ContinualSystem
from cl_compress.experiment import build_experiment
from cl_compress.models import ContinualModel
from cl_compress.strategies import Phase, TrainSettings, builtin_names, get_strategy
from cl_compress.train import build_and_run
from experiments import harness

RESULTS = Path(__file__).parent / "results"


BACKBONES = {  # (a)'s models: the default MLP (a tiny step) and the small CNN
    "mlp": ("MLP 784-256-256", {"hidden": [256, 256]}),
    "cnn": ("CNN conv32-conv64", {"channels": [32, 64]}),
}


def _model(stream, seed: int, backbone: str = "mlp") -> ContinualModel:
    """The model ``cl_compress.train`` would build for ``stream`` (one experiment builder)."""
    kw = [f"model.{k}=[{','.join(map(str, v))}]" for k, v in BACKBONES[backbone][1].items()]
    return build_experiment(compose_config([f"model={backbone}", f"seed={seed}", *kw]),
                            stream=stream).model


def plain_loop(model: ContinualModel, loader, epochs: int, lr: float) -> float:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y, t in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x, t), y).backward()
            opt.step()
    return time.perf_counter() - t0


def engine(model: ContinualModel, loader, epochs: int, lr: float) -> float:
    strat = get_strategy("naive").from_config({}, TrainSettings(lr=lr))
    strat.setup(model, None)  # type: ignore[arg-type]
    system = ContinualSystem(model, strat)
    system.set_phase(0, Phase(epochs=epochs, lr=lr))
    t0 = time.perf_counter()
    make_trainer(TrainerSettings(progress_bar=False, deterministic=False), epochs).fit(system, loader)
    return time.perf_counter() - t0


class _MinimalModule(L.LightningModule):
    """The least a LightningModule can be: forward, loss, Adam. Attributes the overhead
    to Lightning's own loop versus what ContinualSystem adds on top of it."""

    def __init__(self, model: ContinualModel, lr: float):
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        return F.cross_entropy(self.model(x, 0), y)

    def configure_optimizers(self):
        return torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=self.lr)


def lightning_minimal(model: ContinualModel, loader, epochs: int, lr: float) -> float:
    system = _MinimalModule(model, lr)
    t0 = time.perf_counter()
    make_trainer(TrainerSettings(progress_bar=False, deterministic=False), epochs).fit(system, loader)
    return time.perf_counter() - t0


def overhead(stream, epochs: int, repeats: int, backbone: str = "mlp") -> list[str]:
    exp = stream.experiences[0]
    steps = epochs * -(-exp.train_x.shape[0] // 128)
    loops = (("plain PyTorch", plain_loop), ("minimal LightningModule", lightning_minimal),
             ("cl_compress engine", engine))
    times: dict[str, list[float]] = {name: [] for name, _ in loops}
    for r in range(repeats):  # interleaved, so drift on a noisy machine hits all alike
        for name, fn in loops:
            model = _model(stream, seed=r, backbone=backbone)
            model.set_trainable_heads(0)
            loader = make_loader(exp.train_x, exp.train_y, 0, 128, shuffle=True, seed=r)
            times[name].append(fn(model, loader, epochs, 1e-3))
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    mp, ml, mo = med["plain PyTorch"], med["minimal LightningModule"], med["cl_compress engine"]
    rows = [f"| {k} | {med[k]:.3f} | {low[k]:.3f} | {1000 * med[k] / steps:.3f} | "
            f"{med[k] / mp:.3f} |" for k in times]
    return [
        f"## (a) Framework overhead ({BACKBONES[backbone][0]}, split_fmnist task 0, batch 128, Adam)",
        "",
        f"{repeats} interleaved repeats of {epochs} epochs = {steps} optimiser steps each.",
        "Lightning rows include the Trainer start-up; the engine adds the strategy hooks,",
        "per-epoch training loss/accuracy and the NaN check.",
        "",
        "| loop | median s per fit | min s | ms per step (median) | ratio to plain (median) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"**ratio ours / plain = {mo / mp:.3f}** (target <= 1.15; by the fastest repeat "
        f"{low['cl_compress engine'] / low['plain PyTorch']:.3f}); "
        f"minimal LightningModule / plain = {ml / mp:.3f}; ours / minimal LightningModule = "
        f"{mo / ml:.3f}.",
        "",
    ]


def _hot_spots(prof: cProfile.Profile, n: int = 4) -> str:
    st = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, _line, fn), (_, _, _tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
        if "/cl_compress/compress/" in file or "/cl_compress/strategies/" in file:
            rows.append((ct, f"{Path(file).parent.name}/{Path(file).name}:{fn}"))
    rows.sort(reverse=True)
    return ", ".join(f"{name} {ct:.1f}s" for ct, name in rows[:n]) or "-"


def per_strategy(names: list[str], overrides: list[str]) -> list[str]:
    lines = [
        "## (b) Per strategy on split_fmnist (task-incremental, default config of each strategy)",
        "",
        "| strategy | wall s | train s | strategy-work s | share | eval s | avg_acc "
        "| hottest strategy code (cumulative) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        cfg = compose_config([f"strategy={name}", "benchmark=split_fmnist", "logger=none",
                              "trainer.progress_bar=false", "overwrite=true", *overrides])
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        res = build_and_run(cfg, Path("runs/bench") / name)
        prof.disable()
        wall = time.perf_counter() - t0
        tm = res["timing"]
        lines.append(
            f"| {name} | {wall:.1f} | {tm['train_seconds']:.1f} | {tm['strategy_seconds']:.1f} | "
            f"{100 * tm['strategy_seconds'] / wall:.0f}% | {tm['eval_seconds']:.1f} | "
            f"{res['avg_acc']:.4f} | {_hot_spots(prof)} |"
        )
        print(lines[-1], flush=True)
    lines += ["", "Train seconds include strategy work done inside training steps "
              "(masking, projection); the share column counts all strategy hooks.", ""]
    return lines


def versus_avalanche(stream, epochs: int, seeds: int) -> list[str]:
    """Naive on both frameworks over several seeds: a single seed is not enough, since
    task-IL fine-tuning forgets erratically (one old head can drop to chance or not).

    Avalanche runs twice per seed: as shipped (Adam's state carried from one experience
    to the next) and with the state reset per experience (cl_compress's protocol)."""
    from scipy import stats

    from experiments.avalanche_ref import run_avalanche_naive

    cols = ("cl_compress", "Avalanche", "Avalanche, optimizer reset")
    accs: dict[str, list[float]] = {c: [] for c in cols}
    walls: dict[str, list[float]] = {c: [] for c in cols}
    rows = []
    for seed in range(seeds):
        cfg = compose_config(["strategy=naive", "benchmark=split_fmnist", "logger=none",
                              "trainer.progress_bar=false", f"train.epochs={epochs}",
                              "train.steps_per_task=null",
                              f"seed={seed}", "overwrite=true"])
        t0 = time.perf_counter()
        ours = build_and_run(cfg, Path(f"runs/bench/naive-vs-avalanche/s{seed}"))
        walls["cl_compress"].append(time.perf_counter() - t0)
        accs["cl_compress"].append(ours["avg_acc"])
        for col, reset in ((cols[1], False), (cols[2], True)):
            av = run_avalanche_naive(stream, epochs=epochs, lr=1e-3, batch_size=128, seed=seed,
                                     reset_optimizer_state=reset)
            walls[col].append(av["wall_seconds"])
            accs[col].append(metrics.average_accuracy(av["acc_matrix"]))
        rows.append(f"| {seed} | " + " | ".join(f"{accs[c][-1]:.4f}" for c in cols) + " | "
                    + " | ".join(f"{walls[c][-1]:.1f}" for c in cols[:2]) + " |")
        print(rows[-1], flush=True)

    def ms(v: list[float]) -> str:
        return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"

    lines = [
        f"## (c) Ours vs Avalanche 0.6 (Naive, split_fmnist, {epochs} epochs/task, batch 128, "
        f"Adam 1e-3, {seeds} seeds)",
        "",
        "| seed | avg_acc cl_compress | avg_acc Avalanche | avg_acc Avalanche, optimizer reset "
        "| wall s cl_compress | wall s Avalanche |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "avg_acc mean ± sd: " + ", ".join(f"{c} {ms(accs[c])}" for c in cols) + ".",
    ]
    if seeds > 2:
        for c in cols[1:]:
            w = stats.ttest_ind(accs["cl_compress"], accs[c], equal_var=False)
            u = stats.mannwhitneyu(accs["cl_compress"], accs[c])
            lines.append(f"cl_compress vs {c}: mean difference "
                         f"{statistics.mean(accs['cl_compress']) - statistics.mean(accs[c]):+.4f}, "
                         f"Welch t-test p = {w.pvalue:.3f}, Mann-Whitney U p = {u.pvalue:.3f}.")
    wall_ratio = statistics.median(walls["cl_compress"]) / statistics.median(walls["Avalanche"])
    return lines + [
        "",
        f"Wall-time ratio ours / Avalanche (medians) = {wall_ratio:.2f}. Ours includes building the "
        "stream (Avalanche's nc_benchmark + materialisation), evaluation, checkpoints and "
        "results.json; Avalanche's includes its training and evaluation only.",
        "PackNet (ours vs Avalanche's) is measured by `make bench-packnet`; see "
        "experiments/results/packnet-*.md.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.bench", __doc__, "bench-<date>.md")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 1 epoch")
    ap.add_argument("--strategies", default=",".join(builtin_names()))
    ap.add_argument("--skip", default="", help="sections to skip, e.g. b,c")
    ap.add_argument("--naive-seeds", type=int, default=None,
                    help="seeds of the Naive comparison (c); default 3 with --quick, else 5")
    args = ap.parse_args(argv)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    L.seed_everything(0, verbose=False)
    stream = build_stream(BenchmarkSpec("split_fmnist", backend="native"))
    date = harness.today()
    head = [
        f"# cl_compress benchmark, {date}",
        "",
        f"Command: `{' '.join(['python -m experiments.bench', *(argv or sys.argv[1:])])}`"
        + ("" if (argv or sys.argv[1:]) else " (`make bench`)"),
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), lightning {L.__version__}.",
        "",
    ]
    out = list(head)
    skip = set(args.skip.split(","))
    if "a" not in skip:
        out += overhead(stream, epochs=1 if args.quick else 3, repeats=3 if args.quick else 5)
        print("\n".join(out), flush=True)
        # a heavier step for context: the same loops with the small CNN, one epoch
        out += overhead(stream, epochs=1, repeats=3, backbone="cnn")
        print("\n".join(out[-12:]), flush=True)
    if "b" not in skip:
        names = [n for n in args.strategies.split(",") if n]
        out += per_strategy(names, ["train.epochs=1", "train.steps_per_task=null"] if args.quick else [])
    if "c" not in skip:
        seeds = args.naive_seeds or (3 if args.quick else 5)
        out += versus_avalanche(stream, epochs=1 if args.quick else 2, seeds=seeds)
    text = "\n".join(out)
    print(text)
    harness.write_results(text, args.out, f"bench-{date}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
