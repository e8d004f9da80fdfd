"""``RankAgreement``: under DDP, every rank must hold bit-identical state after each task."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from cl_compress.engine.callbacks.base import LoopState, RunCallback


def _tensor_bytes(t: torch.Tensor) -> bytes:
    """dtype, shape and exact bytes of ``t`` (0-dim ones too: BatchNorm's num_batches_tracked)."""
    head = f"{t.dtype}{tuple(t.shape)}".encode()
    return head + (t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                   if t.numel() else b"")


def state_digests(model: torch.nn.Module, strategy: Any) -> dict[str, str]:
    """SHA-256 of every tensor of the model (``model.<name>``) and of the strategy state
    (``strategy.<path>``), exact bytes: weights, masks, factors, codebooks. Plain Python
    values (counters, timings) are rank-local bookkeeping and not compared."""
    out: dict[str, str] = {}

    def feed(obj: Any, path: str) -> None:
        if isinstance(obj, torch.Tensor):
            out[path] = hashlib.sha256(_tensor_bytes(obj)).hexdigest()
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                feed(obj[k], f"{path}.{k}")
        elif isinstance(obj, list | tuple):
            for i, v in enumerate(obj):
                feed(v, f"{path}[{i}]")

    feed(model.state_dict(), "model")
    feed(strategy.state_dict(), "strategy")
    return out


def state_fingerprint(model: torch.nn.Module, strategy: Any) -> str:
    """One SHA-256 over :func:`state_digests` (names and digests, in order)."""
    h = hashlib.sha256()
    for k, v in state_digests(model, strategy).items():
        h.update(f"{k}={v};".encode())
    return h.hexdigest()


def check_ranks_agree(model: torch.nn.Module, strategy: Any, task: int) -> dict[str, Any]:
    """Under DDP, check that every rank holds bit-identical weights, masks and factors; a
    divergence (e.g. a non-deterministic pruning decision) raises at once, naming the
    tensors that differ, instead of silently producing rank-dependent results."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return {"world_size": 1}
    mine = state_digests(model, strategy)
    every: list[dict[str, str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    differ = sorted({k for d in every for k in set(d or {}) | set(mine)
                     if any((d or {}).get(k) != mine.get(k) for d in every)})
    if differ:
        raise RuntimeError(f"DDP ranks diverged after task {task}: {len(differ)} tensor(s) differ "
                           f"between ranks, first: {', '.join(differ[:6])}")
    return {"world_size": len(every), "ranks_identical": True,
            "fingerprint": state_fingerprint(model, strategy)}


class RankAgreement(RunCallback):
    """After each task, compare the state fingerprints of every rank (results.json ``ddp``)."""

    def on_task_end(self, state: LoopState, t: int) -> None:
        state.ddp = check_ranks_agree(state.model, state.strategy, t)

    def on_results(self, state: LoopState, results: dict[str, Any]) -> None:
        results["ddp"] = state.ddp
