"""Atomic file writes and safe checkpoint loading (``weights_only=True``)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from cl_compress.errors import CheckpointError, UserError


class OutputError(UserError, OSError):
    """A result file cannot be written (disk full, read-only or forbidden folder)."""


_DISK_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}


def _write_failure(path: Path, e: BaseException) -> OutputError | None:
    """A one-line error for a disk-level write failure (torch wraps ENOSPC in a
    RuntimeError 'file write failed'); None for anything else."""
    reason = _DISK_ERRNOS.get(getattr(e, "errno", None) or -1)
    # torch's zip writer reports a full disk as "file write failed" or, when a write came
    # short, "unexpected pos A vs B": any RuntimeError of a write with the disk (nearly) full
    if reason is None and isinstance(e, RuntimeError | OSError):
        try:
            st = os.statvfs(path.parent)
            if st.f_bavail * st.f_frsize < 16 << 20:
                reason = "no space left on the device"
        except OSError:
            pass
    if reason is None:
        return None
    return OutputError(f"cannot write {path}: {reason}; free space or choose another hydra.run.dir "
                       f"(the previous version of the file, if any, is intact)")


def _atomic(path: Path, write) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise (_write_failure(path, e) or e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        failure = _write_failure(path, e) if isinstance(e, Exception) else None
        if failure is not None:
            raise failure from e
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (a crash never leaves a half-written file)."""
    data = json.dumps(obj, indent=2, sort_keys=False, allow_nan=True).encode()
    _atomic(Path(path), lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically (UTF-8): readers see the old file or the whole new one."""
    data = text.encode()
    _atomic(Path(path), lambda f: f.write(data))


def save_torch(path: str | Path, obj: Any) -> int:
    """``torch.save`` atomically; returns the size of the file in bytes. Tensors holding
    NaN/inf are refused (``finite.NonFiniteWeightsError``): they are never written."""
    from cl_compress.rundir.finite import refuse_nonfinite

    refuse_nonfinite(path, obj)
    _atomic(Path(path), lambda f: torch.save(obj, f))
    return os.path.getsize(path)


def load_torch(path: str | Path) -> Any:
    """Load a file written by ``save_torch`` without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes on foreign files
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {_one_line(e)}") from e


def _one_line(e: Exception) -> str:
    """torch's load errors span many lines; keep the reason only."""
    text = str(e)
    if "WeightsUnpickler error" in text or "Weights only load failed" in text:
        return ("it holds objects other than tensors and plain values (refused without running "
                "them: weights_only=True)")
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"
