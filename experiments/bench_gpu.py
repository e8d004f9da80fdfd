"""``make bench-gpu``: throughput on a CUDA device, reduced ResNet-18 on 32x32 inputs.

Synthetic CIFAR-shaped data (3x32x32, 10 classes) kept on the GPU. For fp32 and
bf16-mixed, prints images/s of a minimal plain-PyTorch loop and of our engine for every
registered strategy (one task, the strategy's first phase, hooks included). Exits with a
clear message when no CUDA device is present.

Usage: python -m experiments.bench_gpu [--steps 200] [--batch 256] [--strategies a,b]
"""

from __future__ import annotations

import contextlib
import sys
import time

import lightning as L
import torch
import torch.nn.functional as F

from cl_compress.benchmarks import make_loader
from cl_compress.engine.loop import TrainerSettings, make_trainer
from cl_compress.engine.system import ContinualSystem
from cl_compress.models import ContinualModel, build_backbone
from cl_compress.strategies import Phase, StreamInfo, TaskData, TrainSettings, builtin_names, get_strategy
from experiments import harness

SHAPE = (3, 32, 32)


def _model() -> ContinualModel:
    torch.manual_seed(0)
    body, feat = build_backbone("resnet18", SHAPE, nf=20)
    return ContinualModel(body, feat, [10, 10], multi_head=True)


def plain(x, y, steps: int, batch: int, precision: str) -> float:
    model = _model().cuda()
    model.set_trainable_heads(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    bf16 = precision == "bf16-mixed"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    n = x.shape[0]
    for i in range(steps + 10):
        if i == 10:  # warm-up excluded
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        idx = torch.randint(0, n, (batch,), device="cuda")
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = F.cross_entropy(model(x[idx], 0), y[idx])
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def ours(name: str, x, y, steps: int, batch: int, precision: str) -> float:
    model = _model()
    strat = get_strategy(name).from_config({}, TrainSettings(batch_size=batch))
    strat.setup(model, StreamInfo(2, "task", SHAPE, [10, 10]))
    model.set_trainable_heads(0)
    loader = make_loader(x[: steps * batch].cpu(), y[: steps * batch].cpu(), 0, batch, shuffle=True, seed=0)
    data = TaskData(0, 10, lambda: loader, None, lambda a, b: 0.0)
    strat.before_task(0, data)
    phase = strat.phases(0)[0]
    system = ContinualSystem(model, strat)
    system.set_phase(0, Phase(**{**phase.__dict__, "epochs": 1}))
    trainer = make_trainer(TrainerSettings(accelerator="gpu", precision=precision, progress_bar=False,
                                           deterministic=False), 1)  # 1 epoch = `steps` batches
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.fit(system, loader)
    torch.cuda.synchronize()
    return trainer.global_step * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.bench_gpu", __doc__, "bench-gpu-<date>.md")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--strategies", default=",".join(builtin_names()))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench-gpu needs a CUDA device; none is visible (torch.cuda.is_available() is False).")
        return 2
    torch.backends.cudnn.benchmark = True
    n = args.steps * args.batch
    x = torch.randn(n, *SHAPE, device="cuda")
    y = torch.randint(0, 10, (n,), device="cuda")
    lines = [f"# GPU throughput, {harness.today()}", "",
             f"Command: `{harness.command('experiments.bench_gpu', argv)}`",
             f"Device: {torch.cuda.get_device_name()}; reduced ResNet-18 (nf=20), 3x32x32, "
             f"batch {args.batch}, {args.steps} steps; torch {torch.__version__}, "
             f"lightning {L.__version__}.", "",
             "| loop | precision | images/s | vs plain |", "|---|---|---|---|"]
    for precision in ("32-true", "bf16-mixed"):
        base = plain(x, y, args.steps, args.batch, precision)
        lines.append(f"| plain PyTorch | {precision} | {base:.0f} | 1.00 |")
        print(lines[-1], flush=True)
        for name in [s for s in args.strategies.split(",") if s]:
            ips = ours(name, x, y, args.steps, args.batch, precision)
            lines.append(f"| {name} | {precision} | {ips:.0f} | {ips / base:.2f} |")
            print(lines[-1], flush=True)
    lines += ["", "Ours includes Trainer start-up and host-to-device copies of each batch "
              "(the plain loop indexes GPU-resident data)."]
    print("\n".join(lines))
    harness.write_results("\n".join(lines), args.out, f"bench-gpu-{harness.today()}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
