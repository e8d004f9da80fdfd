"""The device a run trains on, in words: named in the run's first line, its final summary,
results.json ``config.device`` and the W&B config (``trainer.accelerator=auto`` by default)."""

from __future__ import annotations

from typing import Any


def _count(devices: Any, available: int) -> int:
    if devices in ("auto", -1, "-1", None):
        return available
    if isinstance(devices, list | tuple):
        return len(devices)
    try:
        return int(devices)
    except (TypeError, ValueError):
        return 1


def describe_device(trainer: dict[str, Any]) -> str:
    """``GPU (NVIDIA H200)``, ``2 GPUs (...) with ddp``, ``CPU (no GPU found)``, ``CPU``: what
    Lightning will pick for ``trainer.accelerator`` / ``devices`` on this machine."""
    import torch

    acc = str(trainer.get("accelerator", "auto")).lower()
    strategy = trainer.get("strategy", "auto")
    extra = f" with {strategy}" if strategy not in ("auto", None) else ""
    if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        n = _count(trainer.get("devices", 1), torch.cuda.device_count())
        name = torch.cuda.get_device_name(0)
        return (f"GPU ({name})" if n == 1 else f"{n} GPUs ({name})") + extra
    mps = getattr(torch.backends, "mps", None)
    if acc in ("auto", "mps") and mps is not None and mps.is_available():
        return "Apple MPS" + extra
    if acc in ("gpu", "cuda"):
        return "GPU requested, none found"
    n = _count(trainer.get("devices", 1), 1)
    procs = f"{n} CPU processes" if n > 1 else "CPU"
    return procs + (" (no GPU found)" if acc == "auto" else "") + extra
