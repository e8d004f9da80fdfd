"""One independent model per task: the accuracy reference and the denominator of
every compression ratio (it stores T full bodies)."""

from __future__ import annotations

import contextlib
from typing import Any

from torch import nn

from cl_compress.strategies.base import CompressionStats, Strategy, TaskData, check_format, dense_stats
from cl_compress.strategies.helpers import clone_state, head_params, head_states, load_head_states
from cl_compress.strategies.registry import register


def reset_parameters(module: nn.Module) -> None:
    """Re-initialise every sub-module that knows how (Linear, Conv, BatchNorm ...)."""
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()


@register("individual")
class Individual(Strategy):
    """A fresh body for every task; task ``j`` is answered by body ``j`` and head ``j``."""

    description = "a fresh model per task (accuracy reference, compression denominator)"
    scenarios = ("task", "class")  # class: the task id is inferred at test time
    infers_task = True
    zero_forgetting = True

    def __init__(self, cfg, train):
        super().__init__(cfg, train)
        self.bodies: list[dict[str, Any]] = []

    def before_task(self, task: int, data: TaskData) -> None:
        if task > 0:
            reset_parameters(self.net.body)

    def after_task(self, task: int, data: TaskData) -> None:
        self.bodies.append(clone_state(self.net.body.state_dict()))

    @contextlib.contextmanager
    def task_context(self, task: int):
        body = self.net.body
        current = clone_state(body.state_dict())
        body.load_state_dict(self.bodies[task])
        try:
            yield
        finally:
            body.load_state_dict(current)

    def compression_stats(self) -> CompressionStats:
        body = dense_stats(self.net.body)
        n = len(self.bodies) * body.stored_params + head_params(self.net, len(self.bodies))
        return CompressionStats(n, 32 * n, {"bodies": len(self.bodies)})

    def export_artifact(self) -> dict[str, Any]:
        return {"format": "individual-fp32", "bodies": self.bodies,
                "heads": head_states(self.net, len(self.bodies))}

    def load_artifact(self, artifact: dict[str, Any]) -> None:
        """The inverse of :meth:`export_artifact`; ``heads`` may also be the whole head list's
        state dict (``{"<task>.<key>": tensor}``) that artifacts written before the shared
        helper hold."""
        check_format(artifact, "individual-fp32", self.name)
        self.bodies = [dict(b) for b in artifact["bodies"]]
        load_head_states(self.net, artifact["heads"])
        if self.bodies:
            self.net.body.load_state_dict(self.bodies[-1])

    def state_dict(self) -> dict[str, Any]:
        return {"bodies": self.bodies}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bodies = list(state["bodies"])
