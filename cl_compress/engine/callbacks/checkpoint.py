"""``Checkpointer``: resume and ``checkpoint.pt``, in one place. The checkpoint is read once
(by the run session's pre-check on rank 0, handed over here; read here on other ranks)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from cl_compress.compress.svd import SVDFactorized
from cl_compress.engine.callbacks.base import LoopState, RunCallback
from cl_compress.errors import CheckpointError
from cl_compress.rundir.checkpoint import (
    CKPT_FORMAT,
    check_structure,
    load_strategy_state,
    state_error,
    training_config,
)
from cl_compress.rundir.io import load_torch, save_torch

log = logging.getLogger("cl_compress.engine.loop")
CHECKPOINT = "checkpoint.pt"


class Checkpointer(RunCallback):
    """``resume``: restore model, strategy, the loop's matrix, accuracies and timings and
    every callback's state from the last finished task, after checking that the checkpoint
    belongs to this run. After each task (rank 0): write ``checkpoint.pt`` atomically."""

    def __init__(self, resume: bool, loaded: dict[str, Any] | None = None, save: bool = True):
        self.resume = resume
        self.loaded = loaded  # the checkpoint as the session's pre-check read it
        self.save = save

    def on_run_start(self, state: LoopState) -> None:
        if not self.resume:
            return
        path = state.run_dir / CHECKPOINT
        ck = self.loaded if self.loaded is not None else _read(path)
        self.loaded = None  # the model and optimiser state need not stay in memory
        check_structure(ck, path)  # format, counters vs matrix (rundir/checkpoint.py)
        for key, want in (("strategy_name", state.strategy.name), ("n_tasks", state.n_tasks),
                          ("seed", state.seed)):
            if ck.get(key) != want:
                raise CheckpointError(f"{path} was written with {key}={ck.get(key)!r}, not {want!r}")
        check_model_shapes(ck["model"], state.model, path)
        done = int(ck["next_task"])
        if len((ck.get("budget") or {}).get("per_task", [])) != done or \
                len(ck.get("acc_before_compression", [])) != done:
            raise CheckpointError(f"{path} is inconsistent: its budget or acc_before_compression "
                                  f"does not cover the {done} finished task(s)")
        load_strategy_state(state.strategy, ck["strategy"], path)  # one line for a state it cannot read
        load_model_state(state.model, ck["model"])
        probe_finished_tasks(state, done, path)  # a state tensor of the wrong shape: one line
        log.info("resuming from task %d (%s)", done, path)
        state.start = done
        state.R = [list(r) for r in ck["acc_matrix"]]
        state.timing = dict(ck["timing"])
        state.acc_before = list(ck.get("acc_before_compression", []))
        for cb in state.callbacks:
            cb.load_state_dict(ck)

    def on_task_end(self, state: LoopState, t: int) -> None:
        from cl_compress.rundir.rank import is_rank_zero

        if not (self.save and is_rank_zero()):
            return
        extra: dict[str, Any] = {}
        for cb in state.callbacks:
            extra |= cb.state_dict()
        save_torch(state.run_dir / CHECKPOINT, {
            "format": CKPT_FORMAT, "next_task": t + 1, "n_tasks": state.n_tasks,
            "seed": state.seed, "strategy_name": state.strategy.name, "acc_matrix": state.R,
            "timing": state.timing, "budget": extra.pop("budget", {"per_task": []}),
            "acc_before_compression": state.acc_before, "model": state.model.state_dict(),
            "strategy": state.strategy.state_dict(), "config": training_config(state.config),
            **extra,
        })


def check_model_shapes(state: dict[str, torch.Tensor], model: torch.nn.Module, path: Path) -> None:
    """The checkpoint's tensors are the model's: same names, same shapes (SVD factors of a
    factorised layer may differ in rank only: CACL truncates and grows them)."""
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    own |= {k: v for k, v in model.state_dict().items() if k not in own}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    for name, v in state.items():
        mine = own[name]
        if mine.shape == v.shape:
            continue
        module = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        if isinstance(module, SVDFactorized) and mine.dim() == v.dim():
            continue
        raise CheckpointError(f"{path} does not fit the model: {name} has shape {tuple(v.shape)} "
                              f"in the checkpoint, {tuple(mine.shape)} in the model")


PROBE_BATCH = 4


def probe_finished_tasks(state: LoopState, done: int, path: Path) -> None:
    """Answer a few test images of every finished task under its context, in eval mode and
    without gradients, right after the restore: a restored strategy state that does not fit
    the model (a mask, code book or factor of another shape, e.g. written by another code
    version) fails here in one line instead of as a traceback mid-task, before any training.
    Nothing is updated (eval-mode BatchNorm, no optimiser)."""
    model, was_training = state.model, state.model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        for j in range(min(done, len(state.stream.experiences))):
            x = state.stream.experiences[j].test_x[:PROBE_BATCH].to(device)
            try:
                with torch.no_grad(), state.strategy.task_context(j):
                    model(x, j)
            except torch.cuda.OutOfMemoryError:
                raise  # the device, not the checkpoint
            except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as e:
                raise state_error(path, state.strategy.name, "that does not fit the model: "
                                  f"answering finished task {j} failed", e) from e
    finally:
        model.train(was_training)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(
            f"resume=true but there is no checkpoint at {path}; point hydra.run.dir at the "
            f"run directory to resume, or drop resume=true to start afresh")
    return load_torch(path)


def load_model_state(model, state: dict[str, Any]) -> None:
    """``load_state_dict`` that first resizes parameters whose shape changed (e.g. CACL
    grows or truncates its factors), so a checkpoint of any task loads into a fresh model."""
    import torch

    own = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, value in state.items():
        if name in own and own[name].shape != value.shape:
            own[name].data = torch.empty_like(value, device=own[name].device)
    model.load_state_dict(state)
