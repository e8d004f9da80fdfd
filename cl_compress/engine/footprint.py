"""Per-task footprint of a run: how stored size, strategy state, checkpoint and inference cost
grow with the number of tasks (results.json ``footprint``, one entry per task).

After task ``t`` is checkpointed, :func:`record` measures

* ``stored_params`` / ``stored_bits``: what the strategy stores to answer for tasks 0..t
  (its ``compression_stats``, as the final ``compression`` block counts them);
* ``strategy_state_bytes``: the tensor payload of ``strategy.state_dict()`` (masks, factors,
  codebooks, per-task norm states, ...), each storage counted once;
* ``checkpoint_bytes``: the tensor payload of what the checkpoint holds for model and strategy
  (shared storages once), and ``checkpoint_file_bytes``, the file's size on disk (pickle
  framing included; a resumed run may differ from an uninterrupted one by a few bytes);
* ``flops_task`` / ``nonzero_task``: forward FLOPs of one sample and nonzero weights of the
  newest task ``t`` as the model answers for it (:mod:`cl_compress.engine.flops`).

Entries live in ``footprint.json`` in the run directory, keyed by task and written atomically,
so a resumed run keeps those of the tasks it does not repeat; :func:`read` returns them in task
order for results.json. Only rank 0 measures and writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cl_compress.rundir.io import write_json

FILE = "footprint.json"


def tensor_bytes(*objs: Any) -> int:
    """Bytes of the tensors in ``objs`` (nested dicts/lists), each storage counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def walk(o: Any) -> None:
        nonlocal total
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            key = (st.data_ptr(), st.nbytes())
            if key not in seen:
                seen.add(key)
                total += st.nbytes()
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list | tuple):
            for v in o:
                walk(v)

    for o in objs:
        walk(o)
    return total


def measure(model: torch.nn.Module, strategy: Any, x: torch.Tensor, task: int,
            checkpoint: Path | None = None) -> dict[str, Any]:
    """The footprint after ``task`` (``x``: one test input of ``task``)."""
    from cl_compress.engine.flops import forward_flops, nonzero_weights

    stats = strategy.compression_stats()
    sstate = strategy.state_dict()
    entry: dict[str, Any] = {
        "task": task, "stored_params": int(stats.stored_params), "stored_bits": int(stats.stored_bits),
        "strategy_state_bytes": tensor_bytes(sstate),
        "checkpoint_bytes": tensor_bytes(model.state_dict(), sstate),
    }
    if checkpoint is not None and checkpoint.is_file():
        entry["checkpoint_file_bytes"] = checkpoint.stat().st_size
    try:
        device = next(model.parameters()).device
        with strategy.task_context(task):
            entry["flops_task"] = int(forward_flops(model, x[:1].to(device), task))
            entry["nonzero_task"] = int(nonzero_weights(model, task))
    except Exception as e:  # noqa: BLE001 - a figure the counter cannot make is reported, not fatal
        entry["flops_error"] = f"{type(e).__name__}: {e}"
    return entry


def record(run_dir: Path, model: torch.nn.Module, strategy: Any, x: torch.Tensor, task: int,
           checkpoint: Path | None = None) -> None:
    """Measure the footprint after ``task`` and store it in ``run_dir/footprint.json``; task 0
    starts the file afresh. Rank 0 only (other ranks return at once)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        return
    path = Path(run_dir) / FILE
    entries = {} if task == 0 or not path.is_file() else json.loads(path.read_text())
    entries[str(task)] = measure(model, strategy, x, task, checkpoint)
    write_json(path, entries)


def read(run_dir: Path, n_tasks: int) -> list[dict[str, Any]]:
    """The entries of tasks ``0..n_tasks-1`` that were recorded, in task order."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return []
    entries = json.loads(path.read_text())
    return [entries[str(t)] for t in range(n_tasks) if str(t) in entries]
