"""``make bench-capacity``: how much of the network each task may use, Ada-QPacknet with shared
bit capacity (the authors' scheme) vs exclusive ownership vs PackNet, on permuted_fmnist.

Three runs on the same stream (10 tasks by default, a reduced per-task training set, the same
optimiser-step budget per task): ``ada_qpacknet`` with ``capacity=shared_bits`` (a 32-bit slot
holds several tasks' low-bit codes; a task claims every position with room for its codes),
``ada_qpacknet`` with ``capacity=exclusive`` (one owner per weight, PackNet's index) and
``packnet`` with ``prune_ratio=0.5`` (fp32 weights). Per task it reports the usable positions
(share of the body's weight positions the task may train) and the free bits (share of the
body's 32 bits x positions holding no stored code) when the task starts, and the final
accuracy row; per run avg acc, stored bits, model bytes and the optimiser steps (training and
search). Writes the table with the command and date to ``experiments/results/``.

``--time-search``: instead, time one search candidate (one epoch of training on split_fmnist
task 0, 2000 images) through ``TaskData.fit`` (a fresh Lightning Trainer running the engine's
training step) and through the plain loop Ada-QPacknet used before (same hooks, no Trainer).

Usage: python -m experiments.capacity [--tasks 10] [--train-per-task 2000] [--steps 200]
       [--out PATH] | [--time-search [--reps 5]]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cl_compress.compose import compose_config
from cl_compress.train import build_and_run

from . import harness

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "capacity"


def packnet_capacity(res: dict) -> list[dict[str, float]]:
    """PackNet's capacity at each task's start from its final owned counts (frozen after the
    task): usable = free positions; free bits = the same share (fp32 weights, 32 bits each)."""
    owned = res["strategy_extra"]["owned"]
    total = res["compression"]["shared_entries"]
    out = []
    for t in range(len(res["acc_matrix"])):
        taken = sum(sum(c[:t]) for c in owned.values())
        out.append({"usable_positions": 1 - taken / total, "free_bits": 1 - taken / total})
    return out


def capacity_of(res: dict) -> list[dict[str, float]]:
    if res["strategy"] == "packnet":
        return packnet_capacity(res)
    cap = res["strategy_extra"]["capacity"]
    return [cap[str(t)] for t in range(len(res["acc_matrix"]))]


def table(results: list[dict]) -> str:
    lines = []
    for r in results:
        cap, row = capacity_of(r), r["acc_matrix"][-1]
        x, c, b = r["strategy_extra"], r["compression"], r["budget"]
        bits = x.get("bits_per_task") or [32] * len(row)
        search = [t["extra_steps"].get("search", 0) for t in b["per_task"]]
        lines += [f"### {r['tag']}", "",
                  "| task | usable positions | free bits | bits | kept weights | final acc | "
                  "train steps | search steps |", "|" + "---|" * 8]
        kept = [sum(v[t] for v in x["owned"].values()) for t in range(len(row))]
        for t, a in enumerate(row):
            lines.append(f"| {t} | {cap[t]['usable_positions']:.4f} | {cap[t]['free_bits']:.4f} | "
                         f"{bits[t]} | {kept[t]} | {a:.4f} | {b['per_task'][t]['train_steps']} | "
                         f"{search[t]} |")
        lines += ["", f"avg_acc **{r['avg_acc']:.4f}**, forgetting {r['forgetting']:.4f}, stored "
                  f"bits {c['stored_bits']:,} ({c['stored_bits'] / 8e3:.1f} kB), model_bytes "
                  f"{c['model_bytes']:,}, train steps {b['train_steps']}, search steps "
                  f"{b['extra_steps'].get('search', 0)}", ""]
    return "\n".join(lines)


def summary(results: list[dict]) -> str:
    head = ("| run | avg acc | usable positions at last task | free bits at last task | "
            "stored bits | model bytes | train steps | search steps |")
    lines = [head, "|" + "---|" * 8]
    for r in results:
        cap, c, b = capacity_of(r)[-1], r["compression"], r["budget"]
        lines.append(f"| {r['tag']} | {r['avg_acc']:.4f} | {cap['usable_positions']:.4f} | "
                     f"{cap['free_bits']:.4f} | {c['stored_bits']:,} | {c['model_bytes']:,} | "
                     f"{b['train_steps']} | {b['extra_steps'].get('search', 0)} |")
    return "\n".join(lines)


def time_search(reps: int) -> None:
    """Seconds per search candidate: engine Trainer (``TaskData.fit``) vs a plain loop."""
    import time

    import torch.nn.functional as F

    from cl_compress.benchmarks import make_loader
    from cl_compress.engine.loop import engine_fitter, evaluate
    from cl_compress.experiment import build_experiment
    from cl_compress.settings import TrainerSettings
    from cl_compress.strategies import StreamInfo, TaskData
    from cl_compress.strategies.base import Phase, build_optimizer
    from cl_compress.strategies.packnet import PackNet

    cfg = compose_config(["strategy=ada_qpacknet", "benchmark=split_fmnist",
                          "benchmark.max_train_per_task=2000"])
    exp = build_experiment(cfg)
    stream, model, s, train = exp.stream, exp.model, exp.strategy, exp.plan.train
    s.setup(model, StreamInfo(stream.n_tasks, "task", stream.input_shape, stream.head_sizes))
    e = stream.experiences[0]

    def loader():
        return make_loader(e.train_x, e.train_y, 0, train.batch_size, shuffle=True, seed=0)

    data = TaskData(0, e.n_outputs, loader, (e.test_x, e.test_y),
                    lambda x, y: evaluate(model, x, y, 0, 256),
                    fitter=engine_fitter(model, s, loader, 0, TrainerSettings(progress_bar=False)))
    s.before_task(0, data)
    s.ratios[0] = {n: 0.5 for n in s.layers}
    s.prune(0)
    phase = Phase.default(train, "search", epochs=1, lr=train.lr * 0.1)

    def plain() -> int:  # the loop Ada-QPacknet had before TaskData.fit
        opt = build_optimizer((p for p in model.parameters() if p.requires_grad), phase)
        model.train()
        n = 0
        for x, y, _t in loader():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x, 0), y).backward()
            s.after_backward()
            opt.step()
            s.after_optimizer_step(0)
            n += 1
        return n

    out = {}
    for name, fn in (("engine Trainer (TaskData.fit)", lambda: data.fit(phase)), ("plain loop", plain)):
        times = []
        for _ in range(reps + 1):  # the first is a warm-up
            PackNet.before_phase(s, 0, phase, data)
            t0 = time.perf_counter()
            steps = fn()
            times.append(time.perf_counter() - t0)
        out[name] = (sorted(times[1:])[len(times[1:]) // 2], steps)
    for name, (sec, steps) in out.items():
        print(f"{name}: median {sec:.3f} s per candidate ({steps} steps, {1e3 * sec / steps:.1f} "
              f"ms per step)")
    a, b = (v[0] for v in out.values())
    print(f"Trainer overhead per candidate: {a - b:+.3f} s ({a / b:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--train-per-task", type=int, default=2000)
    ap.add_argument("--test-per-task", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200, help="train.steps_per_task")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--time-search", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    for noisy in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.time_search:
        time_search(args.reps)
        return
    base = ["benchmark=permuted_fmnist", f"benchmark.n_tasks={args.tasks}",
            f"benchmark.max_train_per_task={args.train_per_task}",
            f"benchmark.max_test_per_task={args.test_per_task}", f"train.steps_per_task={args.steps}",
            "logger=none", "trainer.progress_bar=false", "seed=0", "overwrite=true"]
    runs = [("ada_qpacknet capacity=shared_bits", ["strategy=ada_qpacknet"]),
            ("ada_qpacknet capacity=exclusive",
             ["strategy=ada_qpacknet", "strategy.capacity=exclusive"]),
            ("packnet prune_ratio=0.5", ["strategy=packnet", "strategy.prune_ratio=0.5"])]
    results = []
    for tag, extra in runs:
        res = build_and_run(compose_config(base + extra), RUNS / tag.split()[-1].replace("=", "-"))
        res["tag"] = tag
        results.append(res)
        print(f"{tag}: avg_acc={res['avg_acc']:.4f} row={res['acc_matrix'][-1]}", flush=True)
    text = summary(results) + "\n\n" + table(results)
    print(text)
    ada = results[0]["strategy_config"]
    doc = harness.header(
        "Capacity per task: Ada-QPacknet shared bits vs exclusive vs PackNet",
        "experiments.capacity", argv,
        f"setup: permuted_fmnist, {args.tasks} tasks, {args.train_per_task} training / "
        f"{args.test_per_task} test images per task, {harness.setup_of(results[0])}, "
        f"train.steps_per_task={args.steps} (split over train + retrain phases), seed 0; "
        f"Ada-QPacknet defaults otherwise (population {ada['population']}, "
        f"{ada['search_epochs']} search epoch(s), {ada['quant_method']}, tolerance "
        f"{ada['tolerance']:g} points); search steps are counted apart; `make bench-capacity`",
        "usable positions: share of the body's weight positions the task may train when it "
        "starts; free bits: share of 32 bits x positions that hold no stored code then") + text
    harness.write_results(doc, args.out, f"capacity-{args.tasks}task-{harness.today()}.md")


if __name__ == "__main__":
    main()
