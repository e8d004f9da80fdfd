"""``make bench-scale``: what each strategy costs on a paper-scale backbone, on this CPU.

Every registered strategy trains reduced ResNet-18 (nf=20) on random CIFAR-shaped tasks
(3x32x32, 10 classes a task, batch 64) through the real task loop (``build_and_run``: the
engine's training step, every strategy hook, Lightning), all in one process. Measured:

* **ms per optimiser step** of the task's first phase (median gap between consecutive
  training steps after two warm-up steps: forward, backward, the strategy's per-step hooks,
  the optimiser, Lightning's loop), as a ratio to ``naive`` measured in the same process
  (naive runs before every strategy and after the last; each ratio uses the two beside it).
  LRPET projects at every epoch end, outside the step: its ``project_all`` is timed and
  amortised over one epoch of a 10-split CIFAR-100 task at batch 64 (5000 / 64 = 79 steps).
* **after-task operations**: every ``before_task``/``before_phase``/``after_phase``/
  ``after_task`` hook of the strategy (PackNet's prune and store, Ada-QPacknet's sparsity and
  bit-width searches and k-means, LRPET's truncation and BN re-calibration, CACL's
  truncation) and the class-IL task-inference refit (``refit_old_heads``, timed on one
  class-IL PackNet run), each as a share of the task's training time at the paper recipe's
  budget. That training time is EXTRAPOLATED: the measured ms/step times the steps per task
  of the strategy's ``recipe_*`` preset (naive/individual/the refit: the paper-style
  ``resnet18_cifar100`` preset, 3900 steps) -- this CPU does not run those budgets.
  Search candidates' training steps (Ada-QPacknet) are training, reported apart, not hooks.
* **peak memory**: in a fresh child process per strategy, the resident set after the imports
  and a warm-up run, and the kernel's high-water mark (reset in between) of the strategy's
  own short run; with naive's for comparison.

The data is random (class prototypes plus noise): the figures are costs, not accuracies.

Usage: python -m experiments.bench_scale [--steps 12] [--tasks 2] [--strategies a,b] [--no-memory]
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import yaml

from experiments import harness

SHAPE = (3, 32, 32)
CLASSES = 10
BATCH = 64
EPOCH_STEPS = 79  # one epoch of a 10-split CIFAR-100 task at batch 64: LRPET's projection period
PRESETS = Path(__file__).resolve().parents[1] / "cl_compress" / "launch" / "presets"
PAPER_PRESET = "resnet18_cifar100"
HOOKS = ("before_task", "before_phase", "after_phase", "after_task")
TARGET_STEP, TARGET_SHARE = 1.3, 0.05


def preset_steps(name: str) -> int | None:
    """``train.steps_per_task`` of a preset (None when the preset does not set it)."""
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        return None
    for o in yaml.safe_load(path.read_text()).get("overrides", []):
        if str(o).startswith("train.steps_per_task="):
            return int(str(o).split("=", 1)[1].split()[0])
    return None


def recipe_budget(strategy: str) -> tuple[str, int]:
    """The steps per task the strategy's ``recipe_*`` preset trains (else the paper-style
    ResNet preset's) and the preset's name."""
    steps = preset_steps(f"recipe_{strategy}")
    if steps:
        return f"recipe_{strategy}", steps
    return PAPER_PRESET, int(preset_steps(PAPER_PRESET) or 3900)


def random_stream(spec, n_train: int, n_test: int):
    """``build_stream``'s stand-in: ``spec.n_tasks`` tasks of random 3x32x32 images (class
    prototypes plus noise), local labels, one head per task."""
    from cl_compress.benchmarks.base import Experience, Stream

    g = torch.Generator().manual_seed(int(spec.seed))
    exps = []
    for t in range(int(spec.n_tasks)):
        protos = torch.rand(CLASSES, *SHAPE, generator=g)

        def draw(n: int, protos=protos):
            y = torch.arange(n) % CLASSES
            return (protos[y] + 0.3 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1), y

        (xtr, ytr), (xte, yte) = draw(n_train), draw(n_test)
        exps.append(Experience(t, list(range(t * CLASSES, (t + 1) * CLASSES)), xtr, ytr, xte, yte,
                               CLASSES))
    return Stream("random_cifar_shape", "task", SHAPE, CLASSES * len(exps), exps, source="random")


class Probe:
    """Timestamps of training steps (by task and phase name) and the duration of every
    strategy hook, taken by wrapping the classes' methods for one run."""

    def __init__(self):
        self.steps: list[tuple[int, str, float]] = []
        self.hooks: list[tuple[int, str, float]] = []

    @contextlib.contextmanager
    def attach(self, strategy_cls):
        from cl_compress.engine.callbacks import class_il
        from cl_compress.engine.system import ContinualSystem

        probe = self
        step = ContinualSystem.training_step

        def training_step(system, batch, batch_idx):
            probe.steps.append((system.task, system.phase.name, time.perf_counter()))
            return step(system, batch, batch_idx)

        def timed(label, fn, task_of):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    task, what = task_of(args)
                    probe.hooks.append((task, f"{label}{what}", time.perf_counter() - t0))
            return wrapper

        patches = [mock.patch.object(ContinualSystem, "training_step", training_step),
                   mock.patch.object(class_il, "refit_old_heads", timed(
                       "task-inference refit", class_il.refit_old_heads, lambda a: (a[1], "")))]
        for hook in HOOKS:
            fn = getattr(strategy_cls, hook)
            phase = (lambda a: (a[1], f"({a[2].name})")) if "phase" in hook else (lambda a: (a[1], ""))
            patches.append(mock.patch.object(strategy_cls, hook, timed(hook, fn, phase)))
        if hasattr(strategy_cls, "project_all"):  # LRPET's epoch-end projection
            patches.append(mock.patch.object(strategy_cls, "project_all", timed(
                "project_all", strategy_cls.project_all, lambda a: (-1, ""))))
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            yield self

    def ms_per_step(self, task: int, phase: str) -> tuple[float, int]:
        """Median gap (ms) between consecutive steps of ``phase`` of ``task`` after 2 warm-up
        steps, and the number of gaps it is the median of."""
        ts = [t for k, p, t in self.steps if k == task and p == phase]
        gaps = [b - a for a, b in zip(ts[2:], ts[3:])]
        return (1000 * statistics.median(gaps), len(gaps)) if gaps else (float("nan"), 0)


def overrides(name: str, steps: int, tasks: int, scenario: str = "task") -> list[str]:
    ov = [f"strategy={name}", "model=resnet18", "model.nf=20", f"benchmark.n_tasks={tasks}",
          f"benchmark.scenario={scenario}", "train.epochs=null", f"train.steps_per_task={steps}",
          f"train.batch_size={BATCH}", "logger=none", "trainer.progress_bar=false",
          "trainer.deterministic=false"]
    if name == "ada_qpacknet":
        ov.append("strategy.population=2")  # the recipe's population (authors: 2)
    return ov


def run_one(name: str, steps: int, tasks: int, n_train: int, scenario: str = "task") -> tuple[Probe, dict]:
    from cl_compress.strategies import get_strategy
    from cl_compress.testing import compose_config
    from cl_compress.train import build_and_run

    cfg = compose_config(overrides(name, steps, tasks, scenario))
    probe = Probe()
    fake = functools.partial(random_stream, n_train=n_train, n_test=64)
    with tempfile.TemporaryDirectory() as d, probe.attach(get_strategy(name)), \
            mock.patch("cl_compress.benchmarks.build_stream", fake):
        res = build_and_run(cfg, Path(d) / "run")
    return probe, res


def first_phase(res: dict) -> str:
    return next(iter(res["budget"]["per_task"][0]["phases"]))


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_of(name: str) -> tuple[float, float]:
    """In this (fresh) process: the resident set after the imports and a warm-up run, and the
    peak resident set of a second run of ``name`` (one task of 2 steps), in MiB. The kernel's
    high-water mark is reset between the two (``/proc/self/clear_refs`` = 5), so the peak is
    that of the measured run, not of importing torch, Lightning and Avalanche."""
    run_one("naive", 2, 1, 128)  # imports, Lightning's first-run set-up, allocator warm-up
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # hand freed heap back (glibc only)
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    run_one(name, 2, 1, 128)
    return base, _status_mib("VmHWM")


def peak_child(name: str) -> tuple[float, float]:
    """(resident MiB before the run, peak MiB during it) of a fresh process running ``name``."""
    p = subprocess.run([sys.executable, "-m", "experiments.bench_scale", "--peak-of", name],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if p.returncode != 0:
        raise RuntimeError(f"peak-memory child for {name} failed: {p.stderr[-1500:]}")
    base, peak = p.stdout.strip().splitlines()[-1].split()
    return float(base), float(peak)


LOAD_AT_START = os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.bench_scale", __doc__, "bench-scale-<date>.md")
    ap.add_argument("--steps", type=int, default=8, help="optimiser steps per task (timed run)")
    ap.add_argument("--tasks", type=int, default=1)
    ap.add_argument("--train", type=int, default=256, help="training images per task")
    ap.add_argument("--strategies", default="")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    ap.add_argument("--peak-of", default=None, help=argparse_hidden())
    args = ap.parse_args(argv)
    harness.quiet_lightning()
    if args.peak_of:  # child: one short task, print the peak RSS in MiB
        print(*peak_of(args.peak_of))
        return 0
    from cl_compress.strategies import builtin_names

    names = [s for s in args.strategies.split(",") if s] or builtin_names()
    others = [n for n in names if n != "naive"]
    # naive runs before every strategy and after the last: each strategy's ratio is taken
    # against the mean of the two naive runs beside it (a shared VM's speed drifts by 20 %
    # within a minute; a single naive base made the ratios that drift, not the strategies)
    order = ["naive"] + [x for n in others for x in (n, "naive")]
    rows: dict[str, dict[str, Any]] = {}
    naive_ms: list[float] = []
    t_start = time.perf_counter()
    failed: dict[str, str] = {}
    for name in order:
        try:
            probe, res = run_one(name, args.steps, args.tasks, args.train)
        except Exception as e:  # noqa: BLE001 - one strategy's failure is reported, the rest run
            failed[name] = f"{type(e).__name__}: {str(e)[:300]}"
            print(f"{name} FAILED: {failed[name]}", flush=True)
            if name == "naive":
                naive_ms.append(float("nan"))  # keeps every strategy paired with its neighbours
            continue
        phase = first_phase(res)
        ms, n = probe.ms_per_step(0, phase)
        print(f"{name}: {ms:.1f} ms/step ({phase}, median of {n})", flush=True)
        if name == "naive":
            naive_ms.append(ms)
            if len(naive_ms) == 1:
                rows["naive"] = {"phase": phase, "ms": ms, "gaps": n, "res": res, "probe": probe,
                                 "proj_ms": 0.0, "extra": res["budget"]["extra_steps"],
                                 "base_i": 0}
            continue
        proj = [s for _, h, s in probe.hooks if h == "project_all"]
        rows[name] = {"phase": phase, "ms": ms, "gaps": n, "res": res, "probe": probe,
                      "proj_ms": 1000 * statistics.median(proj) if proj else 0.0,
                      "extra": res["budget"]["extra_steps"], "base_i": len(naive_ms) - 1}
    refit_probe, refit_res = run_one("packnet", args.steps, 2, args.train, "class")  # refit: task >= 1
    refit = [(t, s) for t, h, s in refit_probe.hooks if h == "task-inference refit"]
    refit_ms, _ = refit_probe.ms_per_step(0, first_phase(refit_res))
    wall = time.perf_counter() - t_start
    ok = [m for m in naive_ms if m == m]
    base = statistics.mean(ok) if ok else float("nan")
    mem_names = ["naive", *[x for x in names if x != "naive"]]
    peaks: dict[str, tuple[float, float]] = {}
    for m in [] if args.no_memory else mem_names:
        try:
            peaks[m] = peak_child(m)
        except RuntimeError as e:
            failed[f"{m} (peak memory)"] = str(e)[-300:]

    out = [harness.header(
        "Strategy cost on reduced ResNet-18, this CPU (random CIFAR-shaped data)", "experiments.bench_scale",
        argv, f"model: reduced ResNet-18 nf=20 (1.09M body parameters), input 3x32x32, 10 classes a "
              f"task, batch {BATCH}; {args.tasks} tasks of {args.steps} optimiser steps "
              f"(every strategy the same), {args.train} random training images a task",
        f"1-minute load average at the start: {LOAD_AT_START:.1f} on {os.cpu_count()} cores (above "
        "about 1, other jobs shared the CPU and absolute times are noisy); the ratios to naive "
        "(each against the naive runs just before and after it, same process) are the figure",
        f"naive ms/step, its runs in order: {' / '.join(f'{m:.1f}' for m in naive_ms)} (mean "
        f"{base:.1f} ms)", f"wall time of the timed runs: {wall:.0f} s"),
        "## Per optimiser step (target: within 1.3x naive)", "",
        "Each strategy's ratio is to the mean of the naive runs just before and just after it "
        "(naive's own row: its first run against the first two naive runs).", "",
        "| strategy | phase timed | ms/step | + amortised projection | naive beside it | ratio to naive "
        "| target |",
        "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        amort = r["proj_ms"] / EPOCH_STEPS
        total = r["ms"] + amort
        i = r["base_i"]
        beside = [m for m in naive_ms[i:i + 2] if m == m]  # the naive runs before and after it
        r["base"] = statistics.mean(beside) if beside else float("nan")
        r["ratio"] = total / r["base"]
        proj = f"{amort:.1f} ({r['proj_ms']:.0f} ms / {EPOCH_STEPS} steps)" if amort else "-"
        out.append(f"| {name} | {r['phase']} | {r['ms']:.1f} | {proj} | {r['base']:.1f} | "
                   f"{r['ratio']:.2f}x | {'met' if r['ratio'] <= TARGET_STEP else 'MISSED'} |")
    out += ["", "## After-task operations (target: each under 5 % of its task's training time)", "",
            "Share = hook seconds / (recipe steps per task x this strategy's measured ms/step): the "
            "training time is extrapolated from the measured step time, not run.", "",
            "| strategy | task | operation | seconds | recipe (steps/task) | share | target |",
            "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        preset, steps = recipe_budget(name)
        train_s = steps * r["ms"] / 1000
        for t, h, s in r["probe"].hooks:
            if h == "project_all" or s < 1e-3:
                continue
            share = s / train_s
            out.append(f"| {name} | {t} | {h} | {s:.2f} | {preset} ({steps}) | {100 * share:.2f} % | "
                       f"{'met' if share < TARGET_SHARE else 'MISSED'} |")
    preset, steps = recipe_budget("naive")
    for t, s in refit:
        share = s / (steps * refit_ms / 1000)
        verdict = "met" if share < TARGET_SHARE else "MISSED"
        out.append(f"| packnet, class-IL | {t} | task-inference refit (refit_old_heads) | {s:.2f} | "
                   f"{preset} ({steps}) | {100 * share:.2f} % | {verdict} |")
    out += ["", f"(packnet class-IL step with self-made negatives: {refit_ms:.1f} ms/step.)", "",
            "Extra training steps outside the task's phases (search candidates, BN re-calibration "
            "batches), per run:", ""]
    out += [f"- {n}: {json.dumps(r['extra'])}" for n, r in rows.items() if r["extra"]]
    if failed:
        out += ["", "## Failed", ""] + [f"- {n}: {e}" for n, e in failed.items()]
    if peaks:
        nb, npk = peaks.get("naive", (float("nan"), float("nan")))
        out += ["", "## Peak memory (fresh process per strategy, one task of 2 steps)", "",
                "Each child imports everything and runs naive once, then resets the kernel's "
                "high-water mark (`/proc/self/clear_refs`) and runs the strategy: 'before' is the "
                "resident set after that warm-up, 'peak' the high-water mark of the strategy's "
                "run, 'growth' their difference (what the strategy's run itself adds).", "",
                "| strategy | before MiB | peak MiB | growth MiB | growth vs naive |",
                "|---|---|---|---|---|"]
        out += [f"| {n} | {b:.0f} | {p:.0f} | {p - b:.0f} | {(p - b) / max(npk - nb, 1e-9):.2f}x |"
                for n, (b, p) in peaks.items()]
    text = "\n".join(out) + "\n"
    print(text)
    harness.write_results(text, args.out, f"bench-scale-{harness.today()}.md")
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
