"""Naive fine-tuning: one shared body trained on every task in turn (lower bound)."""

from __future__ import annotations

from cl_compress.strategies.base import Strategy
from cl_compress.strategies.registry import register


@register("naive")
class Naive(Strategy):
    """Fine-tune the shared body on each new task; only the task's head is new.

    Stores one dense body plus the heads, so it is the smallest baseline and the
    reference for catastrophic forgetting.
    """

    description = "fine-tune one shared body on every task (forgetting lower bound)"
