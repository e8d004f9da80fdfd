"""Size accounting shared by all strategies."""

from __future__ import annotations

from torch import nn


def count_params(module: nn.Module) -> int:
    """Number of parameters of a module.

    >>> count_params(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters())


def individual_reference_bits(body: nn.Module, heads: nn.Module, n_tasks: int) -> int:
    """Bits stored by one independent fp32 model per task (the ``individual`` baseline).

    >>> individual_reference_bits(nn.Linear(3, 2), nn.Linear(2, 2), 4)
    1216
    """
    return 32 * (n_tasks * count_params(body) + count_params(heads))
