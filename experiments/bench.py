"""``make bench``: measured performance figures, printed and saved as Markdown.

(a) framework overhead: our engine (ContinualSystem + a Lightning Trainer per phase) versus
    a minimal plain-PyTorch loop, same model, same initial weights, same batches;
(b) per strategy: wall time of a split_fmnist run, the share spent in strategy work
    (pruning, SVD/projection, k-means ...), and the hottest functions inside it (cProfile);
(c) ours versus Avalanche 0.6 on the same stream and budget (Naive; PackNet when
    experiments/bench_packnet.py provides it).

Usage: python -m experiments.bench [--quick] [--strategies a,b] [--out PATH]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
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
from cl_compress.models import ContinualModel, build_backbone
from cl_compress.runner import TrainerSettings, make_trainer
from cl_compress.strategies import Phase, TrainSettings, builtin_names, get_strategy
from cl_compress.system import ContinualSystem
from cl_compress.testing import compose_config
from cl_compress.train import build_and_run

RESULTS = Path(__file__).parent / "results"


def _model(stream, seed: int) -> ContinualModel:
    torch.manual_seed(seed)
    body, feat = build_backbone("mlp", stream.input_shape, hidden=[256, 256])
    return ContinualModel(body, feat, stream.head_sizes, multi_head=True)


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
    system.set_phase(0, Phase(epochs=epochs, lr=lr), model.head(0).out_features)
    t0 = time.perf_counter()
    make_trainer(TrainerSettings(progress_bar=False, deterministic=False), epochs).fit(system, loader)
    return time.perf_counter() - t0


def overhead(stream, epochs: int, repeats: int) -> list[str]:
    exp = stream.experiences[0]
    steps = epochs * -(-exp.train_x.shape[0] // 128)
    ours, plain = [], []
    for r in range(repeats):  # interleaved, so drift on a noisy machine hits both alike
        for fn, sink in ((plain_loop, plain), (engine, ours)):
            model = _model(stream, seed=r)
            model.set_trainable_heads(0)
            loader = make_loader(exp.train_x, exp.train_y, 0, 128, shuffle=True, seed=r)
            sink.append(fn(model, loader, epochs, 1e-3))
    mo, mp = statistics.median(ours), statistics.median(plain)
    return [
        "## (a) Framework overhead (MLP 784-256-256, split_fmnist task 0, batch 128, Adam)",
        "",
        f"{repeats} interleaved repeats of {epochs} epochs = {steps} optimiser steps each; medians.",
        "Ours includes the Trainer start-up, torchmetrics training accuracy and strategy hooks.",
        "",
        "| loop | seconds per fit | ms per step |",
        "|---|---|---|",
        f"| plain PyTorch | {mp:.3f} | {1000 * mp / steps:.3f} |",
        f"| cl_compress engine | {mo:.3f} | {1000 * mo / steps:.3f} |",
        "",
        f"**ratio ours / plain = {mo / mp:.3f}** (target <= 1.15)",
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
                              "trainer.progress_bar=false", *overrides])
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


def versus_avalanche(stream, epochs: int) -> list[str]:
    from experiments.avalanche_ref import run_avalanche_naive

    cfg = compose_config(["strategy=naive", "benchmark=split_fmnist", "logger=none",
                          "trainer.progress_bar=false", f"train.epochs={epochs}"])
    t0 = time.perf_counter()
    ours = build_and_run(cfg, Path("runs/bench/naive-vs-avalanche"))
    ours_wall = time.perf_counter() - t0
    av = run_avalanche_naive(stream, epochs=epochs, lr=1e-3, batch_size=128)
    av_acc = metrics.average_accuracy(av["acc_matrix"])
    lines = [
        f"## (c) Ours vs Avalanche 0.6 (split_fmnist, {epochs} epochs/task, batch 128, Adam 1e-3)",
        "",
        "| strategy | framework | wall s (train + eval, data built) | avg_acc |",
        "|---|---|---|---|",
        f"| Naive | cl_compress | {ours_wall:.1f} | {ours['avg_acc']:.4f} |",
        f"| Naive | Avalanche | {av['wall_seconds']:.1f} | {av_acc:.4f} |",
        "",
        f"Wall-time ratio ours / Avalanche (Naive) = {ours_wall / av['wall_seconds']:.2f}. Ours includes "
        "building the stream (Avalanche's nc_benchmark + materialisation); Avalanche's excludes it.",
        "PackNet (ours vs Avalanche's) is measured by `make bench-packnet`; see "
        "experiments/results/packnet-*.md.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 1 epoch")
    ap.add_argument("--strategies", default=",".join(builtin_names()))
    ap.add_argument("--skip", default="", help="sections to skip, e.g. b,c")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    L.seed_everything(0, verbose=False)
    stream = build_stream(BenchmarkSpec("split_fmnist", backend="native"))
    date = dt.date.today().isoformat()
    head = [
        f"# cl_compress benchmark, {date}",
        "",
        f"Command: `{' '.join(['python -m experiments.bench', *(argv or sys.argv[1:])])}` (`make bench`)",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), lightning {L.__version__}.",
        "",
    ]
    out = list(head)
    skip = set(args.skip.split(","))
    if "a" not in skip:
        out += overhead(stream, epochs=1 if args.quick else 3, repeats=3 if args.quick else 5)
        print("\n".join(out), flush=True)
    if "b" not in skip:
        names = [n for n in args.strategies.split(",") if n]
        out += per_strategy(names, ["train.epochs=1"] if args.quick else [])
    if "c" not in skip:
        out += versus_avalanche(stream, epochs=1 if args.quick else 2)
    text = "\n".join(out)
    print(text)
    path = Path(args.out) if args.out else RESULTS / f"bench-{date}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
