"""Which process writes the run directory: rank 0 of a distributed run (or the only one)."""

from __future__ import annotations


def is_rank_zero() -> bool:
    """Rank 0 as Lightning knows it (set by the launcher's environment or the Trainer)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0
