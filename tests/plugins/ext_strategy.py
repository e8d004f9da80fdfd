"""A strategy defined outside the cl_compress package (used by tests/test_plugins.py).

It trains only the heads (the body stays as initialised), so old tasks are never
forgotten; it is also task-incremental only, to test scenario checks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from cl_compress.strategies import Strategy, StrategyConfig, hp


class HeadsOnly(Strategy):
    description = "train only the task heads on a frozen random body"
    scenarios = ("task",)

    @dataclass
    class Config(StrategyConfig):
        lr_scale: float = hp(1.0, 0.0, 10.0, low_open=True)

    def setup(self, model, info):
        super().setup(model, info)
        model.body.requires_grad_(False)
        self.contexts: list[int] = []

    def phases(self, task):
        from cl_compress.strategies import Phase

        return [Phase.default(self.train, lr=self.train.lr * self.cfg.lr_scale)]

    def task_context(self, task):
        self.contexts.append(task)
        return contextlib.nullcontext()
