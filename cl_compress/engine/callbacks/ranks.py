"""``RankAgreement``: under DDP, every rank must hold bit-identical state after each task."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from cl_compress.engine.callbacks.base import LoopState, RunCallback


def state_fingerprint(model: torch.nn.Module, strategy: Any) -> str:
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


def check_ranks_agree(model: torch.nn.Module, strategy: Any, task: int) -> dict[str, Any]:
    """Under DDP, check that every rank holds bit-identical weights, masks and factors; a
    divergence (e.g. a non-deterministic pruning decision) raises at once instead of
    silently producing rank-dependent results."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return {"world_size": 1}
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, state_fingerprint(model, strategy))
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP ranks diverged after task {task}: state fingerprints {digests}")
    return {"world_size": len(digests), "ranks_identical": True, "fingerprint": digests[0]}


class RankAgreement(RunCallback):
    """After each task, compare the state fingerprints of every rank (results.json ``ddp``)."""

    def on_task_end(self, state: LoopState, t: int) -> None:
        state.ddp = check_ranks_agree(state.model, state.strategy, t)

    def on_results(self, state: LoopState, results: dict[str, Any]) -> None:
        results["ddp"] = state.ddp
