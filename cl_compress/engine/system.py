"""``ContinualSystem``: the one LightningModule that trains every strategy.

It holds the continual model and the strategy, forwards Lightning's hooks to the
strategy, measures training loss and accuracy per epoch and times strategy work.

Per-step cost matters: on small models a training step takes a few milliseconds, and
``make bench`` (section a) compares this engine with a plain PyTorch loop. The step
therefore only adds to two in-place sums and a count (no ``self.log`` and no metric
object per step); they are reduced across ranks once per epoch. ``self.log`` was the
largest single overhead (0.8-1 ms per call on this CPU), so it is not used: the run's
progress display (progress.py) reads the loss every ``PROG_BAR_EVERY`` steps only.
Evaluation uses torchmetrics (engine/loop.py).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F

from cl_compress.errors import NonFiniteLossError  # noqa: F401  (re-exported)
from cl_compress.models import ContinualModel, broadcast_norm_buffers
from cl_compress.strategies.base import Phase, Strategy, build_optimizer, lr_factor  # noqa: F401  (re-exported)

PROG_BAR_EVERY = 25  # steps between progress-bar loss updates
CUDA_FINITE_CHECK_EVERY = 32  # on accelerators, checking every step would sync every step


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off: under ``trainer.precision=bf16-mixed`` Lightning runs the whole training
    step in autocast, where a matmul gives bfloat16; the strategies' per-step hooks (gradient
    masks, LRPET's SVD projection, CACL's factor updates) must compute in float32 on the
    float32 weights, as they do without mixed precision."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def sync_batchnorm(model: torch.nn.Module, trainer) -> None:
    """``trainer.sync_batchnorm``: turn the body's BatchNorm layers into ``SyncBatchNorm`` (in
    place, state kept) once, before ``strategy.setup`` records its norm layers; Lightning's own
    conversion would replace the modules at every fit, behind the strategy's back."""
    if getattr(trainer, "sync_batchnorm", False):
        model.body = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.body)


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
        # The step is written out (forward, loss, backward, strategy hooks, optimizer step):
        # clearer for strategy authors and a few percent cheaper than Lightning's closure.
        self.automatic_optimization = False
        # running sums of the epoch: summed loss, correct predictions (float32 on the
        # training device; deliberately not a buffer, so precision plugins leave it alone),
        # and the number of examples
        self._epoch_sums = torch.zeros(2)
        self._epoch_n = 0
        # work done in the current phase (this rank): optimiser steps and training samples
        self.phase_steps = 0
        self.phase_samples = 0
        # optimiser steps of the whole run and of the current task (progress, W&B step axes),
        # the phase's index within its task and the epochs the phase has finished
        self.run_steps = 0
        self.task_steps = 0
        self.phase_index = 0
        self.phase_epoch = 0
        self.progress = None  # a cl_compress.engine.progress.RunProgress, or None
        self._sched: torch.optim.lr_scheduler.LambdaLR | None = None
        # the training loss: None is the task head's cross-entropy; a callable
        # ``loss_fn(model, x, y, task) -> (logits, loss, n_extra)`` replaces it (class-IL task
        # inference trains "not mine" outputs on ``n_extra`` self-made negatives per batch,
        # counted in ``phase_negatives``)
        self.loss_fn: Callable[..., tuple[torch.Tensor, torch.Tensor, int]] | None = None
        self.phase_negatives = 0
        # training-only batch transform (benchmarks.feed.BatchAugment), set per phase by the
        # loop; None: batches are used as loaded. Evaluation never goes through it.
        self.batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def set_phase(self, task: int, phase: Phase, index: int = 0) -> None:
        """Point the system at a task and phase (``index``: its place in the task's phases)
        before a ``Trainer.fit``."""
        if task != self.task or index == 0:
            self.task_steps = 0
        self.task, self.phase, self.phase_index = task, phase, index
        self.phase_steps = self.phase_samples = self.phase_epoch = self.phase_negatives = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.task)

    def training_step(self, batch, batch_idx: int) -> None:
        x, y, task = batch
        if self.batch_transform is not None:  # training augmentation, on the batch's device
            x = self.batch_transform(x)
            batch = (x, y, task)
        opt = self.optimizers()
        opt.zero_grad()  # type: ignore[union-attr]
        if self.loss_fn is None:
            logits = self.model(x, int(task))
            loss = F.cross_entropy(logits, y)
        else:
            logits, loss, n_extra = self.loss_fn(self.model, x, y, int(task))
            self.phase_negatives += n_extra
        t0 = time.perf_counter()
        with full_precision(x.device):  # regularisers (CACL's orthogonality Grams) in float32
            total = self.strategy.training_loss(loss, logits, batch)
        self.strategy_seconds += time.perf_counter() - t0
        self._check_finite(total, batch_idx)
        self.manual_backward(total)  # precision scaling and DDP gradient sync included
        t0 = time.perf_counter()
        with full_precision(x.device):
            self.strategy.after_backward()
        self.strategy_seconds += time.perf_counter() - t0
        opt.step()  # type: ignore[union-attr]
        if self._sched is not None:
            self._sched.step()
        self.phase_steps += 1
        self.task_steps += 1
        self.run_steps += 1
        self.phase_samples += y.shape[0]
        t0 = time.perf_counter()
        with full_precision(x.device):  # projections, masks, SVDs: float32 under bf16-mixed
            self.strategy.after_optimizer_step(self.global_step)
        self.strategy_seconds += time.perf_counter() - t0
        with torch.no_grad():  # in place, no new tensors: a few microseconds per step
            self._epoch_sums[0].add_(loss.detach(), alpha=y.shape[0])
            self._epoch_sums[1].add_((logits.argmax(-1) == y).sum())
            self._epoch_n += y.shape[0]
        if self.progress is not None and batch_idx % PROG_BAR_EVERY == 0:
            self.progress.step(self, float(loss.detach()))

    def _check_finite(self, total: torch.Tensor, batch_idx: int) -> None:
        """Stop on a NaN/inf loss: every step on CPU (cheap), every few steps elsewhere."""
        if total.device.type != "cpu" and batch_idx % CUDA_FINITE_CHECK_EVERY:
            return
        value = float(total.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at task {self.task}, phase {self.phase.name!r}, "
                f"step {self.global_step}; lower the learning rate (train.lr / phase lr)"
            )

    def on_train_epoch_start(self) -> None:
        self._epoch_sums = torch.zeros(2, device=self.device)
        self._epoch_n = 0

    def on_train_epoch_end(self) -> None:
        # reduce() all-reduces across DDP ranks, so every rank must reach this point.
        sums = torch.cat([self._epoch_sums, self._epoch_sums.new_tensor([self._epoch_n])])
        loss_sum, correct, n = self.trainer.strategy.reduce(sums, reduce_op="sum").tolist()
        self.phase_epoch += 1
        stats = {"train/loss": loss_sum / max(n, 1.0), "train/acc": correct / max(n, 1.0),
                 "train/task": self.task, "train/phase": self.phase.name,
                 "train/phase_index": self.phase_index, "train/phase_epoch": self.phase_epoch,
                 "train/step": self.run_steps, "train/task_step": self.task_steps}
        if self.on_epoch_end_cb is not None:
            self.on_epoch_end_cb(stats)
        if self.progress is not None:
            self.progress.epoch_end(self, stats)

    def on_train_end(self) -> None:
        """Under DDP, every rank ends the fit with rank 0's buffers (BatchNorm running
        statistics, counters): DDP copies them from rank 0 before each forward, but the last
        step's update is each rank's own, and the strategies store these statistics per task.
        With ``trainer.sync_batchnorm`` the statistics agree already; the copy keeps them
        bit-identical."""
        broadcast_norm_buffers(self.model)

    def configure_optimizers(self):
        opt = build_optimizer(self.strategy.parameters_to_optimize(self.task, self.phase), self.phase)
        ph = self.phase
        self._sched = None
        if ph.scheduler != "none" or ph.warmup_steps > 0:
            # the schedule spans this phase's own optimiser steps (max_steps, or epochs x
            # batches); stepped once per optimiser step in training_step
            total = int(self.trainer.estimated_stepping_batches)
            self._sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: lr_factor(s, total, ph.scheduler, ph.milestones, ph.gamma,
                                         ph.warmup_steps))
        return opt

    def configure_callbacks(self):
        return self.strategy.callbacks()
