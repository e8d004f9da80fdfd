"""The guarded frame of one run (``train.build_and_run``): the run-directory lock, the
fresh-run/overwrite rule, the resume pre-checks and the signal handlers.

Nothing here loads data or trains; every refusal happens before the stream is built.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cl_compress.errors import CheckpointError
from cl_compress.rundir.lock import RunLock, check_fresh_start, remove_orphan_tmp
from cl_compress.rundir.preempt import stop_on_signals

log = logging.getLogger(__name__)


@dataclass
class Session:
    resume: bool
    next_task: int | None  # the checkpoint's next task when resuming
    # the checkpoint as the pre-check read it (rank 0, resuming): the loop's Checkpointer
    # restores from it, so the file is read once
    checkpoint: dict[str, Any] | None = None


def resolve_resume(value: Any, run_dir: Path) -> bool:
    """``resume=auto``: continue when the run directory holds a checkpoint, else start
    (a requeued job runs the same command and continues by itself)."""
    if value == "auto":
        return (run_dir / "checkpoint.pt").exists()
    return bool(value)


def precheck_resume(run_dir: Path, c: dict[str, Any]) -> dict[str, Any]:
    """Load and check the checkpoint against the current config; the checkpoint."""
    from cl_compress.rundir.checkpoint import check_finite_checkpoint, check_same_config, check_structure
    from cl_compress.rundir.io import load_torch

    path = run_dir / "checkpoint.pt"
    if not path.exists():
        raise CheckpointError(
            f"resume=true but there is no checkpoint at {path}; point hydra.run.dir at the "
            f"run directory to resume, or drop resume=true to start afresh"
        )
    ck = load_torch(path)
    check_structure(ck, path)
    check_same_config(ck, c, path)
    check_finite_checkpoint(ck, path)  # NaN weights: refused before any data is loaded
    return ck


@contextlib.contextmanager
def run_session(run_dir: str | Path, c: dict[str, Any]) -> Iterator[Session]:
    from cl_compress.rundir.rank import is_rank_zero

    run_dir = Path(run_dir)
    if not is_rank_zero():  # DDP workers: rank 0 holds the lock and did the checks
        with stop_on_signals(run_dir):  # a signal to this rank stops every rank
            yield Session(resolve_resume(c.get("resume", False), run_dir), None)
        return
    with RunLock(run_dir):
        removed = remove_orphan_tmp(run_dir)
        if removed:
            log.info("removed half-written files of an earlier run: %s", ", ".join(removed))
        resume = resolve_resume(c.get("resume", False), run_dir)
        ck = None
        if resume:
            ck = precheck_resume(run_dir, c)
        else:
            check_fresh_start(run_dir, bool(c.get("overwrite", False)))
        with stop_on_signals(run_dir):
            yield Session(resume, int(ck["next_task"]) if ck else None, ck)
