"""Non-finite weights never reach disk: a checkpoint or an artifact is written only from
finite tensors, and a run whose weights turn NaN/inf stops, naming the last finite
checkpoint (training can diverge without a NaN loss, e.g. one huge step per task).

The checks here import nothing of the engine (io uses them before every write); the check
of a run's state, which names its last checkpoint, is :func:`cl_compress.rundir.checkpoint.check_state`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cl_compress.errors import NonFiniteLossError


class NonFiniteWeightsError(NonFiniteLossError):
    """Model or strategy tensors hold NaN or inf values."""


def first_nonfinite(obj: Any, prefix: str = "") -> tuple[str, int, int] | None:
    """(name, non-finite count, size) of the first floating tensor in ``obj`` (nested
    dicts/lists) that holds NaN or inf; None when every tensor is finite."""
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and obj.numel():
            bad = int((~torch.isfinite(obj.detach())).sum())
            if bad:
                return prefix or "tensor", bad, obj.numel()
        return None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for k, v in items:
        hit = first_nonfinite(v, f"{prefix}.{k}" if prefix else str(k))
        if hit:
            return hit
    return None


def refuse_nonfinite(path: str | Path, obj: Any) -> None:
    """Called by ``io.save_torch``: never write NaN/inf tensors to a file."""
    hit = first_nonfinite(obj)
    if hit:
        name, bad, n = hit
        raise NonFiniteWeightsError(f"refusing to write {path}: {name} has {bad} of {n} values NaN/inf")
