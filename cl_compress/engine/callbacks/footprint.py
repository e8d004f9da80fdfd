"""``TaskFootprint``: per-task stored size, strategy state, checkpoint size and inference
cost (:mod:`cl_compress.engine.footprint`; results.json ``footprint``)."""

from __future__ import annotations

from typing import Any

from cl_compress.engine import footprint
from cl_compress.engine.callbacks.base import LoopState, RunCallback
from cl_compress.engine.callbacks.checkpoint import CHECKPOINT


class TaskFootprint(RunCallback):
    """After task ``t`` is checkpointed (it follows the Checkpointer), measure what the run
    holds; entries live in ``footprint.json`` so a resumed run keeps those of earlier tasks."""

    def on_task_end(self, state: LoopState, t: int) -> None:
        footprint.record(state.run_dir, state.model, state.strategy,
                         state.stream.experiences[t].test_x, t, state.run_dir / CHECKPOINT)

    def on_results(self, state: LoopState, results: dict[str, Any]) -> None:
        results["footprint"] = footprint.read(state.run_dir, state.n_tasks)
