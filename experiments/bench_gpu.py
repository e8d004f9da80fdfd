"""``make bench-gpu``: throughput on a CUDA device, reduced ResNet-18 on 32x32 inputs.

Random CIFAR-shaped data (3x32x32, 10 classes) held on the device; every training batch is
augmented on the device (random crop with 4-pixel zero padding and horizontal flip, batched:
:func:`crop_flip`). For fp32 and bf16-mixed, prints images/s of a minimal plain-PyTorch loop
(same model, same augmentation, same data on the device) and of our engine for every
registered strategy (one task, the strategy's first phase, every hook, Lightning), with the
ratio (target >= 0.9). Then the projected wall time of each ``recipe_*`` and paper-style
preset on this device: optimiser steps of the preset (steps per task x tasks x seeds, every
strategy) at the images/s measured here for that strategy -- a projection for reduced
ResNet-18 (a preset training another model is marked), search candidates' extra steps not
included. Without CUDA it stops with one line; ``--device cpu`` runs the same plan on the CPU
(a smoke check of the script, not a GPU figure).

Usage: python -m experiments.bench_gpu [--steps 200] [--batch 256] [--strategies a,b]
       [--precisions 32-true,bf16-mixed] [--device cuda|cpu] [--nf 20]
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from experiments import harness

SHAPE = (3, 32, 32)
PRESETS = Path(__file__).resolve().parents[1] / "cl_compress" / "launch" / "presets"
CONFIGS = Path(__file__).resolve().parents[1] / "cl_compress" / "configs"
PAPER_STYLE = ("resnet18_cifar100", "cacl_cifar100", "five_datasets_style", "permuted_mnist")


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (``pad`` pixels of zero padding) and horizontal flip of a batch, on its
    device, in a few batched operations (one gather, no per-image Python loop)."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=gen, device=gen.device).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=gen, device=gen.device).to(dev)
    flip = torch.rand(n, 1, 1, generator=gen, device=gen.device).to(dev) < 0.5
    rows = (torch.arange(h, device=dev).view(1, h, 1) + oy).expand(n, h, w)
    cols = torch.arange(w, device=dev).view(1, 1, w).expand(n, h, w)
    cols = torch.where(flip, w - 1 - cols, cols) + ox
    idx = (rows * (w + 2 * pad) + cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return xp.flatten(2).gather(2, idx).view_as(x)


def _model(nf: int):
    from cl_compress.models import ContinualModel, build_backbone

    torch.manual_seed(0)
    body, feat = build_backbone("resnet18", SHAPE, nf=nf)
    return ContinualModel(body, feat, [10, 10], multi_head=True)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain(x, y, steps: int, batch: int, precision: str, device: str, nf: int) -> float:
    """images/s of a minimal loop: index on the device, augment, forward, backward, Adam."""
    model = _model(nf).to(device)
    model.set_trainable_heads(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    amp = (torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16-mixed"
           else contextlib.nullcontext())
    gen = torch.Generator(device=device).manual_seed(0)
    n, warm = x.shape[0], min(10, steps)
    for i in range(steps + warm):
        if i == warm:  # warm-up excluded
            _sync(device)
            t0 = time.perf_counter()
        idx = torch.randint(0, n, (batch,), device=device, generator=gen)
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = F.cross_entropy(model(crop_flip(x[idx], gen), 0), y[idx])
        loss.backward()
        opt.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def ours(name: str, x, y, steps: int, batch: int, precision: str, device: str, nf: int) -> float:
    """images/s of our engine: the strategy's first phase for ``steps`` optimiser steps on
    the same device-resident data and augmentation (Trainer start-up excluded: the time runs
    from the first training step to the last)."""
    from cl_compress.benchmarks.base import TensorTaskDataset, _batch_passthrough
    from cl_compress.engine.loop import TrainerSettings, make_trainer
    from cl_compress.engine.system import ContinualSystem
    from cl_compress.strategies import Phase, StreamInfo, TaskData, TrainSettings, get_strategy

    gen = torch.Generator(device=device).manual_seed(0)

    class Augmented(TensorTaskDataset):  # batches gathered and augmented on the device
        def __getitems__(self, idx):
            i = torch.as_tensor(idx, device=self.x.device)
            return crop_flip(self.x[i], gen), self.y[i], self.task_id

    model = _model(nf)
    strat = get_strategy(name).from_config({}, TrainSettings(batch_size=batch))
    strat.setup(model, StreamInfo(2, "task", SHAPE, [10, 10]))
    model.set_trainable_heads(0)

    def loader():
        return torch.utils.data.DataLoader(
            Augmented(x, y, 0), batch_size=batch, shuffle=True, collate_fn=_batch_passthrough,
            generator=torch.Generator().manual_seed(0), num_workers=0)

    data = TaskData(0, 10, loader, None, lambda a, b: 0.0)
    strat.before_task(0, data)
    phase = strat.phases(0)[0]
    system = ContinualSystem(model, strat)
    system.set_phase(0, Phase(**{**phase.__dict__, "epochs": 1, "steps": None}))
    stamps: list[float] = []
    step = system.training_step

    def timed_step(batch_, batch_idx):
        if device == "cuda" and batch_idx in (2, steps):  # synchronise at the two ends only
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return step(batch_, batch_idx)

    system.training_step = timed_step  # type: ignore[method-assign]
    accel = "gpu" if device == "cuda" else "cpu"
    trainer = make_trainer(TrainerSettings(accelerator=accel, precision=precision, progress_bar=False,
                                           deterministic=False), 1, steps + 3)
    trainer.fit(system, loader())
    _sync(device)
    stamps.append(time.perf_counter())
    # from the start of step 2 (warm-up: 2 steps) to the end of the last one
    return (len(stamps) - 3) * batch / (stamps[-1] - stamps[2])


def preset_plan(name: str, strategies: list[str]) -> dict[str, Any]:
    """What preset ``name`` trains: model, steps per task, tasks, seeds, batch and the
    strategies (``all``: every registered one), read from its YAML."""
    p = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    ov = dict(str(o).split("=", 1) for o in p.get("overrides", []))
    bench = (p.get("benchmarks") or ["?"])[0]
    bench_cfg = CONFIGS / "benchmark" / f"{bench}.yaml"
    n_tasks = ov.get("benchmark.n_tasks") or (
        yaml.safe_load(bench_cfg.read_text()).get("n_tasks") if bench_cfg.is_file() else None)
    strats = strategies if p.get("strategies") in (None, "all") else list(p["strategies"])
    model = ov.get("model", "mlp")
    return {"preset": name, "model": model, "benchmark": bench,
            "steps_per_task": int(str(ov.get("train.steps_per_task", 0)).split()[0] or 0),
            "batch": int(str(ov.get("train.batch_size", 128)).split()[0]),
            "n_tasks": int(str(n_tasks).split()[0]) if n_tasks else 0,
            "seeds": len(p.get("seeds") or [0]), "strategies": strats,
            "variants": len(p.get("variants") or {})}


def projected_hours(plan: dict[str, Any], ips: dict[str, float]) -> float | None:
    """Hours the preset's training steps take at the measured images/s of each strategy
    (a strategy not measured: the mean of those measured); None without a step budget."""
    if not plan["steps_per_task"] or not plan["n_tasks"] or not ips:
        return None
    mean = sum(ips.values()) / len(ips)
    runs = [(s, 1) for s in plan["strategies"]] + [("naive", plan["variants"])]
    images = plan["steps_per_task"] * plan["n_tasks"] * plan["seeds"] * plan["batch"]
    return sum(k * images / ips.get(s, mean) for s, k in runs if k) / 3600


def presets() -> list[str]:
    names = sorted(p.stem for p in PRESETS.glob("recipe_*.yaml"))
    return names + [n for n in PAPER_STYLE if (PRESETS / f"{n}.yaml").is_file()]


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.bench_gpu", __doc__, "bench-gpu-<date>.md")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--strategies", default="")
    ap.add_argument("--precisions", default="32-true,bf16-mixed")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--nf", type=int, default=20, help="ResNet-18 width (20: reduced)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench-gpu needs a CUDA device and none is visible (torch.cuda.is_available() is False); "
              "--device cpu runs the plan on the CPU as a smoke check.")
        return 2
    from cl_compress.strategies import builtin_names

    harness.quiet_lightning()
    names = [s for s in args.strategies.split(",") if s] or builtin_names()
    dev = args.device
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    n = max(args.steps + 10, 4) * args.batch
    x = torch.rand(n, *SHAPE, device=dev)
    y = torch.randint(0, 10, (n,), device=dev)
    where = torch.cuda.get_device_name() if dev == "cuda" else "CPU (smoke check, not a GPU figure)"
    lines = [harness.header(
        f"Throughput on {where}", "experiments.bench_gpu", argv,
        f"reduced ResNet-18 (nf={args.nf}), 3x32x32 random data held on the device, batched random "
        f"crop (pad 4) + flip on the device, batch {args.batch}, {args.steps} timed optimiser steps "
        f"per row (after warm-up) in every row"),
        "| loop | precision | images/s | vs plain (target >= 0.9) |", "|---|---|---|---|"]
    ips_of: dict[str, dict[str, float]] = {}
    for precision in [p for p in args.precisions.split(",") if p]:
        base = plain(x, y, args.steps, args.batch, precision, dev, args.nf)
        lines.append(f"| plain PyTorch | {precision} | {base:.0f} | 1.00 |")
        print(lines[-1], flush=True)
        for name in names:
            ips = ours(name, x, y, args.steps, args.batch, precision, dev, args.nf)
            ips_of.setdefault(precision, {})[name] = ips
            verdict = "" if ips / base >= 0.9 else " (missed)"
            lines.append(f"| {name} | {precision} | {ips:.0f} | {ips / base:.2f}{verdict} |")
            print(lines[-1], flush=True)
    lines += ["", "## Projected wall time of the presets on this device", "",
              "Training steps only (steps/task x tasks x seeds x strategies and variants) at the "
              "images/s measured above for reduced ResNet-18; search candidates' extra steps, "
              "evaluation and start-up are not included. A preset that trains another model "
              "(MLP, CACL's net) is projected as if it trained reduced ResNet-18: marked.", "",
              "| preset | model | benchmark | steps/task x tasks x seeds | runs | "
              + " | ".join(f"hours ({p})" for p in ips_of) + " |",
              "|---|---|---|---|---|" + "---|" * len(ips_of)]
    for name in presets():
        plan = preset_plan(name, names)
        hours = [projected_hours(plan, ips_of[p]) for p in ips_of]
        mark = "" if plan["model"] == "resnet18" else " (not ResNet-18: projection)"
        lines.append(f"| {name} | {plan['model']}{mark} | {plan['benchmark']} | "
                     f"{plan['steps_per_task']} x {plan['n_tasks']} x {plan['seeds']} | "
                     f"{len(plan['strategies']) + plan['variants']} | "
                     + " | ".join("-" if h is None else f"{h:.2f}" for h in hours) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    harness.write_results(text, args.out, f"bench-gpu-{harness.today()}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
