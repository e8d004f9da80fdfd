"""Size accounting shared by all strategies."""

from __future__ import annotations

from torch import nn


def count_params(module: nn.Module) -> int:
    """Number of parameters of a module.

    >>> count_params(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters())


def individual_reference_bits(body: nn.Module, heads: nn.Module, n_tasks: int,
                              seen: int | None = None) -> int:
    """Bits stored by one independent fp32 model per task (the ``individual`` baseline),
    after ``seen`` tasks (default: all ``n_tasks``): ``seen`` bodies and their heads.

    >>> individual_reference_bits(nn.Linear(3, 2), nn.Linear(2, 2), 4)
    1216
    >>> individual_reference_bits(nn.Linear(3, 2), nn.ModuleList([nn.Linear(2, 2)] * 4), 4, seen=1)
    448
    """
    seen = n_tasks if seen is None else seen
    head_list = list(heads) if isinstance(heads, nn.ModuleList) else [heads]
    head_bits = (sum(count_params(h) for h in head_list[:seen]) if len(head_list) == n_tasks
                 else count_params(heads))
    return 32 * (seen * count_params(body) + head_bits)
