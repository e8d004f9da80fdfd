"""The task loop: train each experience in strategy-declared phases, evaluate every seen
task under its context. Everything else a run does (budget ledger, checkpoint and resume,
logging, progress, DDP rank agreement, class-IL task inference) is a run callback
(:mod:`cl_compress.engine.callbacks`) subscribed to the loop's events."""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics.classification import MulticlassAccuracy

from cl_compress import metrics
from cl_compress.benchmarks import Stream
from cl_compress.benchmarks.feed import TrainFeed
from cl_compress.compress.accounting import individual_reference_bits
from cl_compress.engine.callbacks import (
    CHECKPOINT,
    BudgetLedger,
    Checkpointer,
    ClassILInference,
    LoopState,
    ProgressDisplay,
    RankAgreement,
    RunCallback,
    SharedHeadTaskIL,
    TaskEndHook,
    TaskFootprint,
    TaskLogger,
    task_seed,
)
from cl_compress.engine.flops import flops_per_task
from cl_compress.engine.system import ContinualSystem, NonFiniteLossError, sync_batchnorm
from cl_compress.engine.task_inference import TaskInferenceSettings
from cl_compress.models import ContinualModel
from cl_compress.rundir.checkpoint import check_state as check_finite_state
from cl_compress.rundir.checkpoint import describe_checkpoint, file_sha256
from cl_compress.rundir.io import save_torch, write_json
from cl_compress.rundir.preempt import stop_callback, trainer_strategy
from cl_compress.rundir.rank import is_rank_zero
from cl_compress.settings import TrainerSettings
from cl_compress.strategies.base import Phase, Strategy, StreamInfo, TaskData, TrainSettings, allocate_steps

log = logging.getLogger(__name__)
# raised inside Lightning by the installed torch on every fit; nothing a user can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def make_trainer(s: TrainerSettings, epochs: int, steps: int | None = None) -> L.Trainer:
    """A Trainer for one phase: ``epochs`` passes, or exactly ``steps`` optimiser steps
    (the loader is cycled; the last epoch may be partial) when ``steps`` is given."""
    return L.Trainer(
        accelerator=s.accelerator, devices=s.devices, strategy=trainer_strategy(s.strategy),
        num_nodes=s.num_nodes, callbacks=[stop_callback()],  # DDP: every rank stops on a signal
        precision=s.precision, max_epochs=None if steps else epochs, max_steps=steps or -1,
        logger=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        # one display for the whole run (progress.RunProgress), not a bar per fit
        enable_progress_bar=False, deterministic=s.deterministic,
        use_distributed_sampler=True,
    )


def diverged(e: NonFiniteLossError, run_dir: Path) -> NonFiniteLossError:
    """``e`` with what is kept and what to do next."""
    kept = (f"last good checkpoint: {describe_checkpoint(run_dir)}"
            if (run_dir / CHECKPOINT).exists() else "no task finished")
    return NonFiniteLossError(f"{e} ({kept}; the same settings diverge again: lower the "
                              f"learning rate and start afresh with overwrite=true)")


def engine_fitter(model: ContinualModel, strategy: Strategy, loader: Callable[[], Any], task: int,
                  s: TrainerSettings, loss_fn: Callable | None = None,
                  run_dir: Path | None = None, augment: Callable[[], Any] | None = None,
                  ) -> Callable[[Phase], int]:
    """``TaskData.fitter``: train ``task`` for a phase outside the task's phases (a search
    candidate) with the same engine as the phases: a fresh ``ContinualSystem`` (its
    ``training_step``, every strategy hook, the phase's optimiser and lr schedule) and a
    ``make_trainer`` Trainer. Its steps are recorded with ``strategy.count_steps(phase.name)``
    and are not added to the run's step axes."""

    def fit(phase: Phase) -> int:
        system = ContinualSystem(model, strategy)
        system.loss_fn = loss_fn
        system.batch_transform = augment() if augment is not None else None
        system.set_phase(task, phase)
        try:
            make_trainer(s, phase.epochs, phase.steps).fit(system, loader())
        except NonFiniteLossError as e:
            if run_dir is None:
                raise
            raise diverged(e, run_dir) from e
        strategy.count_steps(phase.name, system.phase_steps)
        return system.phase_steps

    return fit


def task_phases(strategy: Strategy, task: int, train: TrainSettings) -> list[Phase]:
    """The strategy's phases of ``task``, with their steps set from ``train.steps_per_task``
    when the budget is given in optimiser steps."""
    phases = strategy.phases(task)
    if train.steps_per_task:
        phases = allocate_steps(phases, int(train.steps_per_task))
    return phases


@torch.no_grad()
def evaluate(model: ContinualModel, x: torch.Tensor, y: torch.Tensor, task: int,
             batch_size: int) -> float:
    """Accuracy of ``model`` answering for ``task`` on (x, y) (full set on every rank)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_out = model.n_classes(task)
    acc = MulticlassAccuracy(num_classes=n_out, average="micro", sync_on_compute=False).to(device)
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        out = model(xb, task)
        acc.update(out if out.shape[1] == n_out else out[:, :n_out], yb)  # class logits only
    model.train(was_training)
    return float(acc.compute())


def default_callbacks(tracker, trainer: TrainerSettings, resume: bool = False,
                      checkpoint: dict[str, Any] | None = None,
                      task_inference: TaskInferenceSettings | None = None,
                      on_task_end: Callable[[int, ContinualModel, Strategy], None] | None = None,
                      steps_per_task: int | None = None,
                      shared_head_class_il: bool = False) -> list[RunCallback]:
    """The callbacks of a run, in the order they hear each event: class-IL inference (opt-in)
    first (its row and metrics feed the logger), the logger before the checkpointer (a task
    is logged, then recorded as finished), the checkpointer before the ledger and the progress
    display (they start from the restored state), a user hook last."""
    cbs: list[RunCallback] = []
    if task_inference is not None:
        cbs.append(ClassILInference(task_inference))
    elif shared_head_class_il:
        cbs.append(SharedHeadTaskIL())
    cbs += [RankAgreement(), TaskLogger(tracker), Checkpointer(resume, checkpoint), TaskFootprint(),
            BudgetLedger(steps_per_task), ProgressDisplay(trainer.progress_bar)]
    if on_task_end is not None:
        cbs.append(TaskEndHook(on_task_end))
    return cbs


def run_stream(
    stream: Stream, model: ContinualModel, strategy: Strategy, train: TrainSettings,
    trainer: TrainerSettings, tracker, run_dir: str | Path, seed: int,
    resume: bool = False, config: dict[str, Any] | None = None,
    on_task_end: Callable[[int, ContinualModel, Strategy], None] | None = None,
    task_inference: TaskInferenceSettings | None = None,
    checkpoint: dict[str, Any] | None = None, callbacks: list[RunCallback] | None = None,
) -> dict[str, Any]:
    """Train ``strategy`` on every experience of ``stream``; return results.json's content.

    ``callbacks`` default to :func:`default_callbacks` (``resume``/``checkpoint``: continue
    from the run directory's checkpoint, already read by the session when given;
    ``task_inference``: class-IL evaluation; ``on_task_end(t, model, strategy)`` after each
    finished task)."""
    cbs = callbacks if callbacks is not None else default_callbacks(
        tracker, trainer, resume, checkpoint, task_inference, on_task_end, train.steps_per_task,
        shared_head_class_il=stream.scenario == "class" and task_inference is None)
    state = LoopState(stream, model, strategy, train, trainer, Path(run_dir), seed, config, cbs)
    T = stream.n_tasks
    # counted before setup() turns the body into a strategy's layers (factors, masks)
    state.seen_reference_bits = [individual_reference_bits(model.body, model.heads, T, seen=t + 1)
                                 for t in range(T)]
    L.seed_everything(task_seed(seed, 0), workers=True, verbose=False)
    sync_batchnorm(model, trainer)  # trainer.sync_batchnorm: once, before the strategy sees the layers
    strategy.setup(model, StreamInfo(T, stream.scenario, stream.input_shape, stream.head_sizes,
                              stream.name))
    state.system = system = ContinualSystem(model, strategy, on_epoch_end=tracker.log_epoch)
    emit = _emitter(cbs)
    emit("on_run_start", state)
    state.feed = TrainFeed.of(stream, trainer)  # augmentation, data on the device
    t_run = time.perf_counter() - sum(state.timing.get("task_seconds", []))

    for t in range(state.start, T):
        t_task = time.perf_counter()
        data = _task_data(state, t)
        model.set_trainable_heads(t)
        system.strategy_seconds = 0.0
        emit("on_task_start", state, t)
        hook_s = _timed(strategy.before_task, t, data)
        _plan(state, t)
        emit("on_fit_start", state, t)
        for k, phase in enumerate(state.phases):
            hook_s += _timed(strategy.before_phase, t, phase, data)
            emit("on_phase_start", state, t, k, phase)
            fit = _fit_phase(state, t, k, phase)
            emit("on_phase_end", state, t, k, phase, fit)
            hook_s += _timed(strategy.after_phase, t, phase, data)
        # the task's own test accuracy as trained, before after_task compresses (quantises,
        # truncates, projects): the "before" of every compression-drop claim
        exp = state.experience
        state.acc_before.append(evaluate(model, exp.test_x, exp.test_y, t, train.eval_batch_size))
        hook_s += _timed(strategy.after_task, t, data)
        hook_s += _timed(strategy.probe, t, functools.partial(
            evaluate, model, exp.test_x, exp.test_y, t, train.eval_batch_size))  # report-only figures
        emit("on_task_trained", state, t)
        state.timing["strategy_seconds"] += hook_s + system.strategy_seconds
        state.timing.setdefault("task_seconds", []).append(time.perf_counter() - t_task)
        check_finite_state(model, strategy, t, run_dir)  # NaN/inf weights: stop, save nothing

        t0 = time.perf_counter()
        state.task_metrics = {}
        state.R.append(evaluate_row(state, t))
        emit("on_evaluate", state, t)
        state.timing["eval_seconds"] += time.perf_counter() - t0
        state.timing["elapsed_seconds"] = time.perf_counter() - t_run
        emit("on_task_end", state, t)

    results = finish(state)
    emit("on_results", state, results)
    emit("on_run_end", state, results)
    if is_rank_zero():
        write_json(state.run_dir / "results.json", results)
    return results


def _emitter(cbs: list[RunCallback]) -> Callable[..., None]:
    def emit(event: str, *args: Any) -> None:
        for cb in cbs:
            getattr(cb, event)(*args)
    return emit


def _task_data(state: LoopState, t: int) -> TaskData:
    """Seed task ``t`` (from ``(seed, t)`` only, so a resumed run equals an uninterrupted
    one), hold out its validation split if the strategy asks, and hand the strategy its data."""
    exp, seed, train, model = state.stream.experiences[t], state.seed, state.train, state.model
    L.seed_everything(task_seed(seed, t), workers=True, verbose=False)
    val = None
    if state.strategy.val_fraction > 0:
        exp, vx, vy = exp.split_validation(state.strategy.val_fraction, seed)
        val = (vx, vy)
    state.experience = exp

    feed = state.feed

    def loader(e=exp, tt=t):
        return feed.loader(e.train_x, e.train_y, tt, train.batch_size, seed=task_seed(seed, tt))

    return TaskData(t, exp.n_outputs, loader, val,
                    lambda x, y, tt=t: evaluate(model, x, y, tt, train.eval_batch_size),
                    fitter=engine_fitter(model, state.strategy, loader, t, state.trainer,
                                         state.system.loss_fn, state.run_dir,
                                         lambda tt=t: feed.augment(task_seed(seed, tt))),
                    seed=task_seed(seed, t))


def _plan(state: LoopState, t: int) -> None:
    """The task's phases and their planned optimiser steps."""
    state.phases = task_phases(state.strategy, t, state.train)
    per_epoch = math.ceil(int(state.experience.train_x.shape[0]) / state.train.batch_size)
    state.planned = [p.steps if p.steps else p.epochs * per_epoch for p in state.phases]


def _fit_phase(state: LoopState, t: int, k: int, phase: Phase) -> L.Trainer:
    """One ``Trainer.fit`` of the system on task ``t``'s phase ``k``."""
    exp, system = state.experience, state.system
    system.set_phase(t, phase, k)
    seed = task_seed(state.seed, t) * 10 + k
    fit_loader = state.feed.loader(exp.train_x, exp.train_y, t, state.train.batch_size, seed=seed)
    system.batch_transform = state.feed.augment(seed)  # training only; None without augmentation
    t0 = time.perf_counter()
    try:
        fit = make_trainer(state.trainer, phase.epochs, phase.steps)
        fit.fit(system, fit_loader)
    except NonFiniteLossError as e:
        raise diverged(e, state.run_dir) from e
    state.timing["train_seconds"] += time.perf_counter() - t0
    return fit


def evaluate_row(state: LoopState, t: int) -> list[float]:
    """Row ``t`` of the accuracy matrix: every seen task ``j`` under its context."""
    row = []
    for j in range(t + 1):
        e = state.stream.experiences[j]
        with state.strategy.task_context(j):
            row.append(evaluate(state.model, e.test_x, e.test_y, j, state.train.eval_batch_size))
    return row


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def finish(state: LoopState) -> dict[str, Any]:
    """The model artifact (rank 0) and results.json's content as the loop knows it; callbacks
    add their sections (``on_results``) and publish it (``on_run_end``)."""
    stream, strategy, R = state.stream, state.strategy, state.R
    stats = state.compression_stats()
    artifact = state.run_dir / "model_artifact.pt"
    exported = strategy.export_artifact() if is_rank_zero() else {}
    state.artifact_format = exported.get("format")
    model_bytes = save_torch(artifact, exported) if is_rank_zero() else 0
    reference_bits = state.seen_reference_bits[-1]
    return {
        "strategy": strategy.name, "benchmark": stream.name, "scenario": stream.scenario,
        "seed": state.seed, "n_tasks": stream.n_tasks, "acc_matrix": R, **metrics.summarize(R),
        "acc_before_compression": state.acc_before,
        "compression": {
            "stored_params": stats.stored_params, "stored_bits": stats.stored_bits,
            "bits_per_param": stats.stored_bits / max(1, stats.stored_params),
            "individual_bits": reference_bits,
            "ratio_vs_individual": metrics.compression_ratio(reference_bits, stats.stored_bits),
            "model_bytes": model_bytes, "artifact": artifact.name, **stats.details,
        },
        "train_seconds": state.timing["train_seconds"], "timing": state.timing,
        "inference": _inference_cost(stream, strategy),
        "strategy_extra": strategy.extra_results(), "strategy_config": asdict(strategy.cfg),
        "stream_source": stream.source, "config": state.config or {},
        "artifact_sha256": file_sha256(artifact) if is_rank_zero() else None,  # evaluate_artifact checks it
        "method": strategy.label,
    }


def _inference_cost(stream: Stream, strategy: Strategy) -> dict[str, Any]:
    """Forward FLOPs of one sample and nonzero weights per task (:mod:`cl_compress.engine.flops`);
    a strategy the counter cannot handle gets its error recorded, not a crash at the end."""
    try:
        return flops_per_task(strategy.model, strategy,
                              [e.test_x[:1] for e in stream.experiences])
    except Exception as e:  # noqa: BLE001 - the run's results matter more than this figure
        log.warning("inference FLOPs not counted: %s", e)
        return {"error": f"{type(e).__name__}: {e}"}


