"""``ContinualSystem``: the one LightningModule that trains every strategy.

It holds the continual model and the strategy, forwards Lightning's hooks to the
strategy, measures training accuracy with torchmetrics and times strategy work.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .models import ContinualModel
from .strategies.base import Phase, Strategy


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def build_optimizer(params, phase: Phase) -> torch.optim.Optimizer:
    params = list(params)
    if not params:
        raise ValueError(f"phase {phase.name!r} has no trainable parameters")
    if phase.optimizer == "adam":
        return torch.optim.Adam(params, lr=phase.lr, weight_decay=phase.weight_decay)
    if phase.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
    if phase.optimizer == "sgd":
        return torch.optim.SGD(params, lr=phase.lr, momentum=phase.momentum,
                               weight_decay=phase.weight_decay)
    raise ValueError(f"optimizer {phase.optimizer!r} is not one of adam, adamw, sgd")


class ContinualSystem(L.LightningModule):
    """Trains ``model`` on the current task and phase, with ``strategy`` hooks."""

    def __init__(self, model: ContinualModel, strategy: Strategy,
                 on_epoch_end: Callable[[dict[str, float]], None] | None = None):
        super().__init__()
        self.model = model
        self.strategy = strategy
        self.task = 0
        self.phase = Phase()
        self.on_epoch_end_cb = on_epoch_end
        self.strategy_seconds = 0.0
        self.train_loss = MeanMetric()
        self.train_acc: MulticlassAccuracy | None = None

    def set_phase(self, task: int, phase: Phase, n_outputs: int) -> None:
        """Point the system at a task and phase before a ``Trainer.fit``."""
        self.task, self.phase = task, phase
        if self.train_acc is None or self.train_acc.num_classes != n_outputs:
            self.train_acc = MulticlassAccuracy(num_classes=n_outputs, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.task)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, task = batch
        logits = self.model(x, int(task))
        loss = F.cross_entropy(logits, y)
        t0 = time.perf_counter()
        total = self.strategy.training_loss(loss, logits, batch)
        self.strategy_seconds += time.perf_counter() - t0
        if not torch.isfinite(total):
            raise NonFiniteLossError(
                f"loss is {total.item()} at task {self.task}, phase {self.phase.name!r}, "
                f"step {self.global_step}; lower the learning rate (train.lr / phase lr)"
            )
        self.train_loss.update(loss.detach())
        assert self.train_acc is not None
        self.train_acc.update(logits.detach(), y)
        self.log("loss", loss.detach(), prog_bar=True, logger=False)
        return total

    def on_after_backward(self) -> None:
        t0 = time.perf_counter()
        self.strategy.after_backward()
        self.strategy_seconds += time.perf_counter() - t0

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        t0 = time.perf_counter()
        self.strategy.after_optimizer_step(self.global_step)
        self.strategy_seconds += time.perf_counter() - t0

    def on_train_epoch_end(self) -> None:
        assert self.train_acc is not None
        # compute() synchronises across DDP ranks, so every rank must reach this point.
        stats = {"train/loss": float(self.train_loss.compute()),
                 "train/acc": float(self.train_acc.compute())}
        self.train_loss.reset()
        self.train_acc.reset()
        if self.on_epoch_end_cb is not None:
            self.on_epoch_end_cb(stats)

    def configure_optimizers(self):
        return build_optimizer(self.strategy.parameters_to_optimize(self.task, self.phase), self.phase)

    def configure_callbacks(self):
        return self.strategy.callbacks()
