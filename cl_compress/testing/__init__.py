"""Helpers for tests and notebooks: compose the Hydra config and run it in-process (the
strategy contract kit is :mod:`cl_compress.testing.contract`)."""

from __future__ import annotations

from pathlib import Path

import torch

from cl_compress.compose import compose_config
from cl_compress.train import build_and_run

__all__ = ["QUICK", "compose_config", "old_task_outputs", "run_quick"]

QUICK = [
    "benchmark=synthetic", "logger=none", "trainer.progress_bar=false", "train.epochs=2",
    "train.steps_per_task=null", "train.batch_size=32",
]


def run_quick(run_dir: str | Path, overrides: list[str] | None = None, on_task_end=None) -> dict:
    """Run a (by default tiny, synthetic) experiment in-process; returns results.json."""
    return build_and_run(compose_config(QUICK + list(overrides or [])), run_dir, on_task_end)


def old_task_outputs(strategy_overrides: list[str], run_dir: str | Path, probe_task: int = 0,
                     extra: list[str] | None = None) -> list[torch.Tensor]:
    """Logits for task ``probe_task``'s test inputs, under its task context, after every task.

    A strategy that claims zero forgetting must return bit-identical tensors.
    """
    from cl_compress.benchmarks import BenchmarkSpec, build_stream

    cfg = compose_config(QUICK + strategy_overrides + list(extra or []))
    stream = build_stream(BenchmarkSpec(**cfg["benchmark"]))
    x = stream.experiences[probe_task].test_x
    outs: list[torch.Tensor] = []

    def snap(t, model, strategy):
        if t >= probe_task:
            model.eval()
            with torch.no_grad(), strategy.task_context(probe_task):
                outs.append(model(x, probe_task).detach().clone())
            model.train()

    build_and_run(cfg, run_dir, snap)
    return outs
