"""The loop's state and the callback protocol (events in the order the loop emits them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L

    from cl_compress.benchmarks import Experience, Stream
    from cl_compress.engine.system import ContinualSystem
    from cl_compress.models import ContinualModel
    from cl_compress.settings import TrainerSettings
    from cl_compress.strategies.base import CompressionStats, Phase, Strategy, TrainSettings


def task_seed(seed: int, task: int) -> int:
    """Seed of task ``task``: independent of history, so a resumed run matches."""
    return seed * 1000 + task


@dataclass
class LoopState:
    """What the loop and its callbacks share. The loop owns the accuracy matrix ``R``, the
    accuracies before compression and the timings; a callback keeps its own state and
    exposes it through ``state_dict``/``load_state_dict`` (the checkpoint)."""

    stream: Stream
    model: ContinualModel
    strategy: Strategy
    train: TrainSettings
    trainer: TrainerSettings
    run_dir: Path
    seed: int
    config: dict[str, Any] | None
    callbacks: list[RunCallback] = field(default_factory=list)
    system: ContinualSystem | None = None
    start: int = 0  # first task to train (a resumed run continues after its last finished task)
    R: list[list[float]] = field(default_factory=list)
    acc_before: list[float] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=lambda: {
        "train_seconds": 0.0, "strategy_seconds": 0.0, "eval_seconds": 0.0})
    # per task: the t + 1 plain individual models seen so far (the last is the final reference)
    seen_reference_bits: list[int] = field(default_factory=list)
    ddp: dict[str, Any] = field(default_factory=lambda: {"world_size": 1})
    # the current task: its experience, its phases and their planned steps, its budget entry
    # (BudgetLedger) and the metrics callbacks add to its log line (e.g. class-IL accuracy)
    experience: Experience | None = None
    phases: list[Phase] = field(default_factory=list)
    planned: list[int] = field(default_factory=list)
    task_budget: dict[str, Any] = field(default_factory=dict)
    task_metrics: dict[str, float] = field(default_factory=dict)
    artifact_format: Any = None  # the exported artifact's format tag (set at the end)
    feed: Any = None  # benchmarks.feed.TrainFeed: loaders (host or device) and augmentation
    # matrices other callbacks measure beside R: "class_il" and "task_inference"
    # (ClassILInference), "task_il" (SharedHeadTaskIL)
    matrices: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return self.stream.n_tasks

    def views(self):
        """The run's matrices under their meaning (:mod:`cl_compress.tracking.keys`): the
        headline of its scenario, the task-IL figures of a class-IL run, task inference."""
        from cl_compress.tracking import keys

        m = self.matrices
        return keys.views(self.stream.scenario, self.R, m.get("class_il"), m.get("task_inference"),
                          m.get("task_il"))

    def compression_stats(self) -> CompressionStats:
        """The strategy's stored size plus what callbacks store beyond it (fp32 values)."""
        from cl_compress.strategies.base import CompressionStats

        stats = self.strategy.compression_stats()
        extra = {k: v for cb in self.callbacks for k, v in cb.stored_params().items()}
        n = sum(extra.values())
        if not n:
            return stats
        return CompressionStats(stats.stored_params + n, stats.stored_bits + 32 * n,
                                {**stats.details, **extra})


class RunCallback:
    """A concern of the task loop. Every event is a no-op here; override what you need.

    Order of events: ``on_run_start`` · per task ``t``: ``on_task_start`` (before
    ``strategy.before_task``) · ``on_fit_start`` (phases planned) · per phase
    ``on_phase_start`` / ``on_phase_end`` · ``on_task_trained`` (after ``strategy.after_task``)
    · ``on_evaluate`` (row ``t`` of ``R`` is in) · ``on_task_end`` · then ``on_results``
    (contribute to results.json) and ``on_run_end`` (publish it)."""

    def on_run_start(self, state: LoopState) -> None: ...
    def on_task_start(self, state: LoopState, t: int) -> None: ...
    def on_fit_start(self, state: LoopState, t: int) -> None: ...
    def on_phase_start(self, state: LoopState, t: int, k: int, phase: Phase) -> None: ...
    def on_phase_end(self, state: LoopState, t: int, k: int, phase: Phase,
                     fit: L.Trainer) -> None: ...
    def on_task_trained(self, state: LoopState, t: int) -> None: ...
    def on_evaluate(self, state: LoopState, t: int) -> None: ...
    def on_task_end(self, state: LoopState, t: int) -> None: ...
    def on_results(self, state: LoopState, results: dict[str, Any]) -> None: ...
    def on_run_end(self, state: LoopState, results: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """Top-level checkpoint entries this callback needs to resume exactly."""
        return {}

    def load_state_dict(self, ck: dict[str, Any]) -> None: ...

    def stored_params(self) -> dict[str, int]:
        """Parameters this callback stores to answer for every task (counted as fp32)."""
        return {}


class TaskEndHook(RunCallback):
    """``fn(t, model, strategy)`` after task ``t`` is evaluated and checkpointed (tests use it
    to snapshot outputs; notebooks to inspect the model)."""

    def __init__(self, fn: Callable[[int, Any, Any], None]):
        self.fn = fn

    def on_task_end(self, state: LoopState, t: int) -> None:
        self.fn(t, state.model, state.strategy)
