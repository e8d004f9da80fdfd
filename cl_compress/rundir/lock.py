"""One run per directory: an exclusive lock held for the whole run, and no silent
overwrite of a finished (or interrupted) run.

The lock is ``fcntl.flock`` on ``<run_dir>/.lock``: the kernel drops it when the process
ends, however it ends (``kill -9`` included), so a stale lock never blocks a later run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from cl_compress.errors import ConfigError, UserError

LOCK_NAME = ".lock"
# what a run writes into its directory (removed by a fresh run with overwrite=true)
RUN_FILES = ("results.json", "checkpoint.pt", "model_artifact.pt", "acc_matrix.png", "metrics.csv",
             "wandb_run_id")
TMP_PREFIXES = tuple(f".{name}." for name in RUN_FILES)


class RunDirBusy(UserError):
    """Another process is running in this run directory."""


class RunLock:
    """``with RunLock(run_dir):`` holds an exclusive lock on the run directory."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot use run directory {self.run_dir}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirBusy(
                f"run directory {self.run_dir} is in use by another run (pid {holder}); wait for "
                f"it to end or choose another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class RunDirTaken(ConfigError):
    """A fresh run was refused: the directory holds another run's results or checkpoint."""


STATUS_STATES = ("running", "done", "failed")


def is_run_folder(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a cl_compress ``status.json`` (a run of ours was started
    there), so the run files in it are a run's, not the user's own."""
    import json

    try:
        st = json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(st, dict) and st.get("state") in STATUS_STATES and "updated" in st


def foreign_files(run_dir: str | Path) -> list[str]:
    """The files a fresh run would replace in a folder that is not a run folder (the
    user's own ``metrics.csv``, ``status.json``, ...); [] in a run folder."""
    run_dir = Path(run_dir)
    if is_run_folder(run_dir):
        return []
    return [n for n in (*RUN_FILES, "status.json") if (run_dir / n).exists()]


def check_fresh_start(run_dir: str | Path, overwrite: bool) -> None:
    """A fresh run must not silently replace a finished or an interrupted run, nor any
    file of a folder that is not a run folder."""
    run_dir = Path(run_dir)
    finished = (run_dir / "results.json").exists()
    if not finished and not (run_dir / "checkpoint.pt").exists():
        foreign = foreign_files(run_dir)
        if foreign and not overwrite:
            raise RunDirTaken(
                f"{run_dir} is not a cl_compress run folder but holds {', '.join(foreign)}, which "
                f"a run would replace; choose another hydra.run.dir, or pass overwrite=true to "
                f"replace them")
        if foreign:
            for name in foreign:
                (run_dir / name).unlink(missing_ok=True)
        return
    if overwrite:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        return
    what = "a finished run (results.json)" if finished else "an unfinished run (checkpoint.pt)"
    raise RunDirTaken(
        f"{run_dir} already holds {what}; pass overwrite=true to replace it, resume=true to "
        f"continue it{'' if finished else ' (or resume=auto)'}, or choose another hydra.run.dir"
    )


def remove_orphan_tmp(run_dir: str | Path) -> list[str]:
    """Delete half-written ``.<file>.*.tmp`` files left by a killed run (only ever called
    while holding the lock, so no other process is writing them)."""
    removed = []
    for p in Path(run_dir).glob(".*.tmp"):
        if p.name.startswith(TMP_PREFIXES) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def job_suffix() -> str:
    """What makes a run folder unique per job (``${clc_job:}`` in ``hydra.run.dir``): the
    SLURM array task or job id, else this process's id; two jobs that start in the same
    second never share a folder."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"j{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return f"j{env['SLURM_JOB_ID']}"
    return f"p{os.getpid()}"


_ASIDE: set[str] = set()


def hydra_subdir(output_dir: str, resume: object, overwrite: object) -> str:
    """``hydra.output_subdir`` (``${clc_hydra_subdir:...}``): ``.hydra``, except in a folder
    that already holds a run (results.json or checkpoint.pt) which this job neither resumes
    nor overwrites: there Hydra writes this job's config aside (``.hydra-job-<pid>``, removed
    when the process ends), so a refused or kept job never rewrites the run's own
    ``.hydra/overrides.yaml``."""
    import atexit
    import shutil

    out = Path(output_dir)
    taken = (out / ".hydra").is_dir() and any((out / n).exists() for n in ("results.json",
                                                                          "checkpoint.pt"))
    if not taken or overwrite is True or resume is True or resume == "auto":
        return ".hydra"
    aside = f".hydra-job-{os.getpid()}"
    if aside not in _ASIDE:
        _ASIDE.add(aside)
        atexit.register(shutil.rmtree, out / aside, True)
    return aside
