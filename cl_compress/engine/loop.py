"""The task loop: train each experience in strategy-declared phases, evaluate every seen
task under its context, checkpoint, log. ``run_stream`` takes typed arguments only."""

from __future__ import annotations

import hashlib
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

from cl_compress.benchmarks import Stream, make_loader
from cl_compress.compress.accounting import individual_reference_bits
from cl_compress.engine import footprint, metrics
from cl_compress.engine.flops import flops_per_task
from cl_compress.engine.progress import RunProgress
from cl_compress.engine.system import ContinualSystem, NonFiniteLossError, sync_batchnorm
from cl_compress.engine.task_inference import (
    TaskInferenceSettings,
    body_features,
    class_il_row,
    feature_basis,
    infer_tasks,
    refit_not_mine,
)
from cl_compress.models import ContinualModel
from cl_compress.rundir.checkpoint import (
    CKPT_FORMAT,
    check_model_shapes,
    check_structure,
    describe_checkpoint,
    file_sha256,
    training_config,
)
from cl_compress.rundir.checkpoint import check_state as check_finite_state
from cl_compress.rundir.io import CheckpointError, load_torch, save_torch, write_json
from cl_compress.settings import TrainerSettings
from cl_compress.strategies.base import (
    CompressionStats,
    Phase,
    Strategy,
    StreamInfo,
    TaskData,
    TrainSettings,
    allocate_steps,
)
from cl_compress.tracking import Tracker, is_rank_zero

log = logging.getLogger(__name__)
# raised inside Lightning by the installed torch on every fit; nothing a user can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
CHECKPOINT = "checkpoint.pt"


def task_seed(seed: int, task: int) -> int:
    """Seed of task ``task``: independent of history, so a resumed run matches."""
    return seed * 1000 + task


def make_trainer(s: TrainerSettings, epochs: int, steps: int | None = None) -> L.Trainer:
    """A Trainer for one phase: ``epochs`` passes, or exactly ``steps`` optimiser steps
    (the loader is cycled; the last epoch may be partial) when ``steps`` is given."""
    return L.Trainer(
        accelerator=s.accelerator, devices=s.devices, strategy=s.strategy, num_nodes=s.num_nodes,
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
                  s: TrainerSettings, negatives: tuple[str, float] | None = None,
                  run_dir: Path | None = None) -> Callable[[Phase], int]:
    """``TaskData.fitter``: train ``task`` for a phase outside the task's phases (a search
    candidate) with the same engine as the phases: a fresh ``ContinualSystem`` (its
    ``training_step``, every strategy hook, the phase's optimiser and lr schedule) and a
    ``make_trainer`` Trainer. Its steps are recorded with ``strategy.count_steps(phase.name)``
    and are not added to the run's step axes."""

    def fit(phase: Phase) -> int:
        system = ContinualSystem(model, strategy)
        system.negatives = negatives
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


class Budget:
    """The work a run actually did, per task and phase: optimiser steps, passes over the
    task's training data (epochs) and training samples, all ranks together; optimiser steps
    or calibration batches a strategy took outside its phases (``Strategy.count_steps``)
    are kept apart in ``extra_steps``. Written to results.json ``budget`` and W&B
    ``budget/*``; the comparison report holds strategies to equal ``train_steps``."""

    def __init__(self, train: TrainSettings, state: dict[str, Any] | None = None):
        self.mode = "steps" if train.steps_per_task else "epochs"
        self.steps_per_task = train.steps_per_task
        self.per_task: list[dict[str, Any]] = [dict(t) for t in (state or {}).get("per_task", [])]

    def start_task(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"train_steps": 0, "samples_seen": 0, "epochs": 0.0,
                                 "phases": {}, "extra_steps": {}}
        self.per_task.append(entry)
        return entry

    @staticmethod
    def add_phase(entry: dict[str, Any], name: str, steps: int, samples: int, n_train: int) -> None:
        ph = entry["phases"].setdefault(name, {"steps": 0, "epochs": 0.0, "samples": 0})
        epochs = samples / max(1, n_train)
        ph["steps"] += steps
        ph["samples"] += samples
        ph["epochs"] = round(ph["epochs"] + epochs, 4)
        entry["train_steps"] += steps
        entry["samples_seen"] += samples
        entry["epochs"] = round(entry["epochs"] + epochs, 4)

    def state(self) -> dict[str, Any]:
        return {"per_task": self.per_task}

    def summary(self) -> dict[str, Any]:
        extra: dict[str, int] = {}
        for t in self.per_task:
            for k, v in t["extra_steps"].items():
                extra[k] = extra.get(k, 0) + v
        steps = [t["train_steps"] for t in self.per_task]
        return {
            "mode": self.mode, "steps_per_task": self.steps_per_task,
            "train_steps": sum(steps), "train_steps_per_task": steps,
            "train_epochs": round(sum(t["epochs"] for t in self.per_task), 4),
            "samples_seen": sum(t["samples_seen"] for t in self.per_task),
            "extra_steps": extra, "per_task": self.per_task,
        }


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


def run_stream(
    stream: Stream, model: ContinualModel, strategy: Strategy, train: TrainSettings,
    trainer: TrainerSettings, tracker: Tracker, run_dir: str | Path, seed: int,
    resume: bool = False, config: dict[str, Any] | None = None,
    on_task_end: Callable[[int, ContinualModel, Strategy], None] | None = None,
    task_inference: TaskInferenceSettings | None = None,
) -> dict[str, Any]:
    """Train ``strategy`` on every experience of ``stream``; return results.json's content.

    ``on_task_end(t, model, strategy)`` is called after task ``t`` is evaluated and
    checkpointed (tests use it to snapshot outputs; notebooks to inspect the model).

    ``task_inference``: class-incremental evaluation of a strategy trained task-incrementally
    (``stream`` has local labels and one head per task; ``Experience.classes`` maps them to
    global labels). After every task the class-IL matrix (task id inferred among the seen
    tasks, :mod:`cl_compress.engine.task_inference`) and the task-inference accuracy are recorded
    beside the task-IL matrix; the class-IL matrix is the run's ``acc_matrix``.
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    T = stream.n_tasks
    # per task: the t + 1 plain individual models seen so far, counted before setup() turns
    # the body into a strategy's layers (factors, masks); the last one is the final reference
    seen_reference_bits = [individual_reference_bits(model.body, model.heads, T, seen=t + 1)
                           for t in range(T)]
    reference_bits = seen_reference_bits[-1]
    L.seed_everything(task_seed(seed, 0), workers=True, verbose=False)
    sync_batchnorm(model, trainer)  # trainer.sync_batchnorm: once, before the strategy sees the layers
    strategy.setup(model, StreamInfo(T, stream.scenario, stream.input_shape, stream.head_sizes))

    R: list[list[float]] = []
    timing = {"train_seconds": 0.0, "strategy_seconds": 0.0, "eval_seconds": 0.0}
    ddp_check: dict[str, Any] = {"world_size": 1}
    start = 0
    budget_state: dict[str, Any] | None = None
    acc_before: list[float] = []
    C: list[list[float]] = []  # class-IL matrix (task id inferred)
    TI: list[list[float]] = []  # task-inference accuracy
    ti_stats: dict[int, dict[str, torch.Tensor]] = {}  # per-task class feature statistics
    if resume:
        start, R, timing, extra_state = _resume(ckpt_path, model, strategy, stream, seed)
        budget_state = extra_state.get("budget")
        acc_before = list(extra_state.get("acc_before_compression", []))
        C = [list(r) for r in extra_state.get("class_il_matrix", [])]
        TI = [list(r) for r in extra_state.get("task_inference_acc", [])]
        ti_stats = {int(k): dict(v) for k, v in extra_state.get("task_inference_stats", {}).items()}
    budget = Budget(train, budget_state)
    system = ContinualSystem(model, strategy, on_epoch_end=tracker.log_epoch)
    if task_inference is not None and task_inference.negatives != "none":
        system.negatives = (task_inference.negatives, float(task_inference.negative_weight))
    system.run_steps = sum(int(b["train_steps"]) for b in budget.per_task)  # resumed: continue
    progress = RunProgress(T, show=trainer.progress_bar and is_rank_zero(), first_task=start)
    system.progress = progress if is_rank_zero() else None
    t_run = time.perf_counter() - sum(timing.get("task_seconds", []))

    for t in range(start, T):
        exp = stream.experiences[t]
        L.seed_everything(task_seed(seed, t), workers=True, verbose=False)
        val = None
        if strategy.val_fraction > 0:
            exp, vx, vy = exp.split_validation(strategy.val_fraction, seed)
            val = (vx, vy)

        def loader(e=exp, tt=t):
            return make_loader(e.train_x, e.train_y, tt, train.batch_size, shuffle=True,
                               seed=task_seed(seed, tt))

        data = TaskData(t, exp.n_outputs, loader, val,
                        lambda x, y, tt=t: evaluate(model, x, y, tt, train.eval_batch_size),
                        fitter=engine_fitter(model, strategy, loader, t, trainer, system.negatives,
                                             run_dir),
                        seed=task_seed(seed, t))
        model.set_trainable_heads(t)
        system.strategy_seconds = 0.0
        t_task = time.perf_counter()
        spent = budget.start_task()
        strategy.take_extra_steps()  # counts belong to the task they were taken in
        hook_s = _timed(strategy.before_task, t, data)
        n_train = int(exp.train_x.shape[0])
        phases = task_phases(strategy, t, train)
        per_epoch = math.ceil(n_train / train.batch_size)
        planned = [p.steps if p.steps else p.epochs * per_epoch for p in phases]
        progress.start_task(t, sum(planned))
        for k, phase in enumerate(phases):
            hook_s += _timed(strategy.before_phase, t, phase, data)
            system.set_phase(t, phase, k)
            progress.start_phase(phase.name, planned[k])
            fit_loader = make_loader(exp.train_x, exp.train_y, t, train.batch_size, shuffle=True,
                                     seed=task_seed(seed, t) * 10 + k)
            t0 = time.perf_counter()
            try:
                fit = make_trainer(trainer, phase.epochs, phase.steps)
                fit.fit(system, fit_loader)
            except NonFiniteLossError as e:
                raise diverged(e, run_dir) from e
            timing["train_seconds"] += time.perf_counter() - t0
            world = int(getattr(fit, "world_size", 1) or 1)
            budget.add_phase(spent, phase.name, system.phase_steps, system.phase_samples * world,
                             n_train)
            if system.negatives is not None:  # the negatives' share of the same steps
                spent["negative_samples"] = (spent.get("negative_samples", 0)
                                             + system.phase_negatives * world)
            hook_s += _timed(strategy.after_phase, t, phase, data)
        # the task's own test accuracy as trained, before after_task compresses (quantises,
        # truncates, projects): the "before" of every compression-drop claim
        acc_before.append(evaluate(model, exp.test_x, exp.test_y, t, train.eval_batch_size))
        hook_s += _timed(strategy.after_task, t, data)
        if task_inference is not None and (task_inference.refits
                                           or task_inference.normalise_scores):
            timing["task_inference_seconds"] = timing.get("task_inference_seconds", 0.0) + _timed(
                refit_old_heads, model, strategy, exp, t, ti_stats, task_inference,
                train, seed)
        spent["extra_steps"] = strategy.take_extra_steps()
        timing["strategy_seconds"] += hook_s + system.strategy_seconds
        timing.setdefault("task_seconds", []).append(time.perf_counter() - t_task)
        check_finite_state(model, strategy, t, run_dir)  # NaN/inf weights: stop, save nothing

        t0 = time.perf_counter()
        row = []
        for j in range(t + 1):
            e = stream.experiences[j]
            with strategy.task_context(j):
                row.append(evaluate(model, e.test_x, e.test_y, j, train.eval_batch_size))
        R.append(row)
        if task_inference is not None:
            norm = {j: (float(v["score_mean"]), float(v["score_std"]))
                    for j, v in ti_stats.items() if "score_mean" in v}
            ci, ti = class_il_row(model, strategy, stream.experiences, t, task_inference.score,
                                  train.eval_batch_size, norm)
            C.append(ci)
            TI.append(ti)
            log.info("task %d class-IL: %s; task inference: %s", t,
                     " ".join(f"{a:.4f}" for a in ci), " ".join(f"{a:.4f}" for a in ti))
        timing["eval_seconds"] += time.perf_counter() - t0
        ddp_check = check_ranks_agree(model, strategy, t)
        timing["elapsed_seconds"] = time.perf_counter() - t_run
        _log_task(tracker, strategy, R, t, seen_reference_bits[t], spent, acc_before[t], ti_stats,
                  _class_il_metrics(C, TI, t) if task_inference is not None else None, timing)
        tracker.log_accuracy_chart(R)
        if is_rank_zero():
            save_torch(ckpt_path, {
                "format": CKPT_FORMAT, "next_task": t + 1, "n_tasks": T, "seed": seed,
                "strategy_name": strategy.name, "acc_matrix": R, "timing": timing,
                "budget": budget.state(), "acc_before_compression": acc_before,
                "model": model.state_dict(), "strategy": strategy.state_dict(),
                "config": training_config(config),
                **({"class_il_matrix": C, "task_inference_acc": TI,
                    "task_inference_stats": ti_stats} if task_inference else {}),
            })
        footprint.record(run_dir, model, strategy, exp.test_x, t, ckpt_path)  # per-task sizes
        progress.task_done(t, row, timing["task_seconds"][-1])
        if on_task_end is not None:
            on_task_end(t, model, strategy)

    class_il = None
    if task_inference is not None:
        class_il = {"acc_matrix": C, "task_inference_acc": TI, "settings": task_inference,
                    "stats": ti_stats}
    return _finish(stream, strategy, R, timing, reference_bits, run_dir, seed, tracker, config,
                   ddp_check, budget.summary(), acc_before, class_il)


def state_fingerprint(model: torch.nn.Module, strategy: Strategy) -> str:
    """SHA-256 over every tensor of the model and of the strategy state (exact bytes):
    weights, masks, factors, codebooks. Plain Python values (e.g. timings) are skipped."""
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            h.update(obj.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                     if obj.numel() else b"")
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                h.update(str(k).encode())
                feed(obj[k])
        elif isinstance(obj, list | tuple):
            for v in obj:
                feed(v)
        # plain values (counters, timings) are rank-local bookkeeping: not compared

    feed(model.state_dict())
    feed(strategy.state_dict())
    return h.hexdigest()


def check_ranks_agree(model: torch.nn.Module, strategy: Strategy, task: int) -> dict[str, Any]:
    """Under DDP, check that every rank holds bit-identical weights, masks and factors.

    A divergence (e.g. a non-deterministic pruning decision) raises at once instead of
    silently producing rank-dependent results.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return {"world_size": 1}
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, state_fingerprint(model, strategy))
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP ranks diverged after task {task}: state fingerprints {digests}")
    return {"world_size": len(digests), "ranks_identical": True, "fingerprint": digests[0]}


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _resume(ckpt_path: Path, model: ContinualModel, strategy: Strategy, stream: Stream,
            seed: int) -> tuple[int, list, dict, dict]:
    """Restore model, strategy and matrix from the last finished task."""
    if not ckpt_path.exists():
        raise CheckpointError(
            f"resume=true but there is no checkpoint at {ckpt_path}; point hydra.run.dir at the "
            f"run directory to resume, or drop resume=true to start afresh"
        )
    ck = load_torch(ckpt_path)
    check_structure(ck, ckpt_path)  # format, counters vs matrix (resume.py)
    for key, want in (("strategy_name", strategy.name), ("n_tasks", stream.n_tasks), ("seed", seed)):
        if ck.get(key) != want:
            raise CheckpointError(f"{ckpt_path} was written with {key}={ck.get(key)!r}, not {want!r}")
    check_model_shapes(ck["model"], model, ckpt_path)
    strategy.load_state_dict(ck["strategy"])
    load_model_state(model, ck["model"])
    log.info("resuming from task %d (%s)", ck["next_task"], ckpt_path)
    extra = {k: ck[k] for k in ("budget", "acc_before_compression", "class_il_matrix",
                                "task_inference_acc", "task_inference_stats") if k in ck}
    done = int(ck["next_task"])
    if len(extra.get("budget", {}).get("per_task", [])) != done or \
            len(extra.get("acc_before_compression", [])) != done:
        raise CheckpointError(f"{ckpt_path} is inconsistent: its budget or acc_before_compression "
                              f"does not cover the {done} finished task(s)")
    return int(ck["next_task"]), [list(r) for r in ck["acc_matrix"]], dict(ck["timing"]), extra


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict`` that first resizes parameters whose shape changed (e.g. CACL
    grows or truncates its factors), so a checkpoint of any task loads into a fresh model."""
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, value in state.items():
        if name in own and own[name].shape != value.shape:
            own[name].data = torch.empty_like(value, device=own[name].device)
    model.load_state_dict(state)


def _log_task(tracker: Tracker, strategy: Strategy, R: list, t: int, reference_bits: int,
              spent: dict[str, Any], acc_before: float, ti_stats: dict[int, Any],
              extra: dict[str, float] | None = None,
              timing: dict[str, Any] | None = None) -> None:
    row = R[t]
    stats = compression_with_task_inference(strategy, ti_stats)
    m: dict[str, float] = {f"eval/acc/task_{j}": a for j, a in enumerate(row)}
    m["eval/acc/avg_seen"] = sum(row) / len(row)
    m["eval/acc/current"] = row[t]  # the task just trained
    if t > 0:
        m["stream/bwt"] = metrics.backward_transfer(R)
        m["stream/forgetting"] = metrics.forgetting(R)
    m["compress/stored_params"] = stats.stored_params
    m["compress/stored_bits"] = stats.stored_bits
    # ``reference_bits``: the t + 1 plain individual models that answer for the tasks seen so
    # far (the final figure, against all T, is in the summary and results.json)
    m["compress/ratio_vs_individual"] = metrics.compression_ratio(reference_bits, stats.stored_bits)
    m |= {f"compress/{k}": float(v) for k, v in strategy.task_metrics(t).items()}
    m["eval/acc_before_compression"] = acc_before
    m["budget/train_steps"] = spent["train_steps"]
    m["budget/epochs"] = spent["epochs"]
    m["budget/samples_seen"] = spent["samples_seen"]
    m |= {f"budget/steps/{name}": ph["steps"] for name, ph in spent["phases"].items()}
    m |= {f"budget/extra_steps/{k}": v for k, v in spent["extra_steps"].items()}
    if "negative_samples" in spent:
        m["budget/negative_samples"] = spent["negative_samples"]
    m |= extra or {}
    if timing:  # this task's wall time, and the run's totals so far
        m["time/task_seconds"] = timing["task_seconds"][-1]
        m |= {f"time/{k}": float(timing[k]) for k in ("train_seconds", "strategy_seconds",
                                                      "eval_seconds", "elapsed_seconds") if k in timing}
    tracker.log_experience(t, m)


def refit_old_heads(model: ContinualModel, strategy: Strategy, exp: Any, t: int,
                    stats: dict[int, dict[str, torch.Tensor]], s: TaskInferenceSettings,
                    train: TrainSettings, seed: int) -> None:
    """After task ``t``: store its class feature statistics (under its own, final context),
    then refit every old head's "not mine" row with task ``t``'s training images as
    negatives (``task_inference.refit_not_mine``). Forward passes and refit steps are
    counted in ``budget.extra_steps`` (``task_inference_features``/``_refit``)."""
    bs = train.eval_batch_size
    n_batches = -(-int(exp.train_x.shape[0]) // bs)
    stats[t] = {}
    if s.normalise_scores:
        _, _, S = infer_tasks(model, strategy, exp.train_x, [t], {t: list(range(model.n_classes(t)))},
                              s.score, bs)
        stats[t] |= {"score_mean": S[0].mean().cpu(), "score_std": S[0].std().cpu()}
        strategy.count_steps("task_inference_features", n_batches * (4 if s.rotations > 1 else 1))
    if not s.refits:
        return
    feats = body_features(model, strategy, exp.train_x, t, bs)
    stats[t] |= feature_basis(feats, s.refit_energy)
    strategy.count_steps("task_inference_features", n_batches)
    for j in range(t):
        neg = body_features(model, strategy, exp.train_x, j, bs)
        strategy.count_steps("task_inference_features", n_batches)
        refit_not_mine(model.head(j), stats[j], neg, s.refit_steps, train.batch_size,
                       s.refit_lr, task_seed(seed, t) * 31 + j)
        strategy.count_steps("task_inference_refit", s.refit_steps)


def compression_with_task_inference(strategy: Strategy,
                                    ti_stats: dict[int, dict[str, torch.Tensor]]) -> CompressionStats:
    """The strategy's stored size plus what task inference stores beyond it (fp32 class
    feature statistics); the heads' "not mine" rows are part of the heads, which every
    strategy counts already."""
    stats = strategy.compression_stats()
    n = sum(v.numel() for st in ti_stats.values() for v in st.values())
    if not n:
        return stats
    return CompressionStats(stats.stored_params + n, stats.stored_bits + 32 * n,
                            {**stats.details, "task_inference_params": n})


def _class_il_metrics(C: list, TI: list, t: int) -> dict[str, float]:
    """Class-IL row and task-inference accuracy after task ``t`` (metrics.csv and W&B)."""
    m: dict[str, float] = {f"eval/class_il/acc/task_{j}": a for j, a in enumerate(C[t])}
    m["eval/class_il/avg_seen"] = sum(C[t]) / len(C[t])
    m |= {f"eval/task_inference/task_{j}": a for j, a in enumerate(TI[t])}
    m["eval/task_inference/avg_seen"] = sum(TI[t]) / len(TI[t])
    return m


def class_il_results(R: list, class_il: dict[str, Any]) -> dict[str, Any]:
    """results.json ``task_il`` and ``class_il`` sections of a task-inference run."""
    C, TI, s = class_il["acc_matrix"], class_il["task_inference_acc"], class_il["settings"]
    final = TI[-1] if TI else []
    return {
        "task_il": {"acc_matrix": R, **metrics.summarize(R)},
        "class_il": {"acc_matrix": C, **metrics.summarize(C), "task_inference_acc": TI,
                     "task_inference_final": final,
                     "task_inference_avg": sum(final) / max(1, len(final)),
                     "score": s.score, "negatives": s.negatives,
                     "negative_weight": s.negative_weight, "refit_old_heads": s.refits,
                     "refit_steps": s.refit_steps if s.refits else 0},
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


def _finish(stream: Stream, strategy: Strategy, R: list, timing: dict, reference_bits: int,
            run_dir: Path, seed: int, tracker: Tracker, config: dict | None,
            ddp_check: dict[str, Any], budget: dict[str, Any],
            acc_before: list[float], class_il: dict[str, Any] | None = None) -> dict[str, Any]:
    stats = compression_with_task_inference(strategy, (class_il or {}).get("stats") or {})
    artifact = run_dir / "model_artifact.pt"
    exported = strategy.export_artifact() if is_rank_zero() else {}
    model_bytes = save_torch(artifact, exported) if is_rank_zero() else 0
    # a task-inference run reports the class-IL matrix as its scenario's figure; the
    # task-IL one (task id given) is kept under ``task_il``
    primary = class_il["acc_matrix"] if class_il else R
    summary = metrics.summarize(primary)
    inference = _inference_cost(stream, strategy)
    results: dict[str, Any] = {
        "strategy": strategy.name, "benchmark": stream.name,
        "scenario": "class" if class_il else stream.scenario,
        "seed": seed, "n_tasks": stream.n_tasks, "acc_matrix": primary, **summary,
        **(class_il_results(R, class_il) if class_il else {}),
        "acc_before_compression": acc_before, "budget": budget,
        "compression": {
            "stored_params": stats.stored_params, "stored_bits": stats.stored_bits,
            "bits_per_param": stats.stored_bits / max(1, stats.stored_params),
            "individual_bits": reference_bits,
            "ratio_vs_individual": metrics.compression_ratio(reference_bits, stats.stored_bits),
            "model_bytes": model_bytes, "artifact": artifact.name, **stats.details,
        },
        "train_seconds": timing["train_seconds"], "timing": timing,
        "inference": inference, "footprint": footprint.read(run_dir, stream.n_tasks),
        "strategy_extra": strategy.extra_results(), "strategy_config": asdict(strategy.cfg),
        "stream_source": stream.source, "ddp": ddp_check, "config": config or {},
        "artifact_sha256": file_sha256(artifact) if is_rank_zero() else None,  # reload checks it
        "method": strategy.label,
    }
    if is_rank_zero():
        if class_il:
            tracker.log_matrix(R, f"{strategy.name} on {stream.name} (task-IL, task id given)",
                               key="acc_matrix_task_il")
            tracker.log_matrix(primary, f"{strategy.name} on {stream.name} (class-IL, task id "
                                        f"inferred by {class_il['settings'].score})")
        else:
            tracker.log_matrix(R, f"{strategy.name} on {stream.name} ({stream.scenario}-IL)")
        comp = results["compression"]
        tracker.log_model(artifact, name=tracker.name or strategy.label, metadata={
            "format": exported.get("format"), "strategy": strategy.name, "method": strategy.label,
            "strategy_config": asdict(strategy.cfg), "benchmark": stream.name,
            "scenario": results["scenario"], "n_tasks": stream.n_tasks, "seed": seed,
            "sha256": results["artifact_sha256"], "avg_acc": summary["avg_acc"],
            "final_acc_row": primary[-1], "task_il_final_row": R[-1], **{k: comp[k] for k in (
                "stored_params", "stored_bits", "bits_per_param", "individual_bits",
                "ratio_vs_individual", "model_bytes")},
            "load": "python -m cl_compress.evaluate_artifact <run_dir>"})
        results["wandb"] = tracker.describe()
        tracker.summary({f"final/{k}": v for k, v in summary.items()}
                        | ({f"final/task_il/{k}": v for k, v in results["task_il"].items()
                            if isinstance(v, int | float)}
                           | {"final/task_inference_avg": results["class_il"]["task_inference_avg"]}
                           if class_il else {})
                        | {f"final/compress/{k}": v for k, v in results["compression"].items()
                           if isinstance(v, int | float)}
                | {f"budget/{k}": v for k, v in budget.items() if isinstance(v, int | float)}
                | {f"final/inference/flops/task_{t}": v
                   for t, v in enumerate(inference.get("flops_per_task", []))}
                | {f"budget/extra_steps/{k}": v for k, v in budget["extra_steps"].items()})
        write_json(run_dir / "results.json", results)
    return results

