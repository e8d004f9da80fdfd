"""Small state helpers shared by the strategies (public: plugins may use them too)."""

from __future__ import annotations

from torch import Tensor


def clone_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """A detached copy of every tensor of ``tensors``."""
    return {k: v.detach().clone() for k, v in tensors.items()}


def latest(states: dict[int, dict[str, Tensor]], task: int) -> dict[str, Tensor]:
    """The state stored by the latest task ``<= task`` (shared state is stored once, by task 0)."""
    return states[max(t for t in states if t <= task)] if any(t <= task for t in states) else {}
