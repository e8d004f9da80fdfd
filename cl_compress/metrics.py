"""Continual-learning metrics over the accuracy matrix, and compression accounting.

``R[i][j]`` is the accuracy on task ``j`` after training task ``i`` (fractions in
[0, 1]); entries with ``j > i`` are unknown (``None``/NaN) and never used. With T tasks:

* average accuracy  ``A = mean_j R[T-1][j]``
* BWT               ``mean_{j<T-1} (R[T-1][j] - R[j][j])`` (Lopez-Paz & Ranzato 2017);
  equals minus the mean of Avalanche's (first-accuracy based) forgetting at the end.
* forgetting        ``mean_{j<T-1} max_{l in j..T-2} R[l][j] - R[T-1][j]`` (Chaudhry et al.
  2018, max-based; >= -BWT, equal when no task ever improved after it was learned).
* plasticity        ``mean_j R[j][j]`` (accuracy right after learning each task).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Matrix = Sequence[Sequence[float | None]]


def _last_row(R: Matrix) -> list[float]:
    T = len(R)
    row = [R[T - 1][j] for j in range(T)]
    if any(v is None or math.isnan(v) for v in row):
        raise ValueError("the last row of the accuracy matrix must be complete")
    return row  # type: ignore[return-value]


def average_accuracy(R: Matrix) -> float:
    """Mean accuracy over all tasks after the last one.

    >>> average_accuracy([[0.9, None], [0.8, 0.7]])
    0.75
    """
    row = _last_row(R)
    return sum(row) / len(row)


def backward_transfer(R: Matrix) -> float:
    """BWT: mean change on old tasks between when learned and the end (negative = forgetting).

    >>> round(backward_transfer([[0.9, None, None], [0.8, 0.9, None], [0.7, 0.6, 1.0]]), 6)
    -0.25
    >>> backward_transfer([[1.0]])
    0.0
    """
    T = len(R)
    if T < 2:
        return 0.0
    return sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)


def forgetting(R: Matrix) -> float:
    """Max-based forgetting (Chaudhry et al. 2018), averaged over all but the last task.

    >>> round(forgetting([[0.5, None, None], [0.9, 0.9, None], [0.7, 0.6, 1.0]]), 6)
    0.25
    >>> forgetting([[1.0]])
    0.0
    """
    T = len(R)
    if T < 2:
        return 0.0
    return sum(max(R[k][j] for k in range(j, T - 1)) - R[T - 1][j] for j in range(T - 1)) / (T - 1)


def plasticity(R: Matrix) -> float:
    """Mean accuracy on each task right after learning it.

    >>> plasticity([[0.9, None], [0.1, 0.7]])
    0.8
    """
    return sum(R[j][j] for j in range(len(R))) / len(R)


def per_task_forgetting(R: Matrix) -> list[float]:
    """Max-based forgetting of each task at the end (0 for the last task).

    >>> [round(v, 6) for v in per_task_forgetting([[0.9, None], [0.6, 0.8]])]
    [0.3, 0.0]
    """
    T = len(R)
    return [max(R[k][j] for k in range(j, T)) - R[T - 1][j] for j in range(T)]


def summarize(R: Matrix) -> dict[str, float]:
    """All stream metrics of a (complete-last-row) accuracy matrix.

    >>> summarize([[1.0, None], [0.5, 1.0]])["bwt"]
    -0.5
    """
    return {
        "avg_acc": average_accuracy(R),
        "bwt": backward_transfer(R),
        "forgetting": forgetting(R),
        "plasticity": plasticity(R),
    }


def compression_ratio(reference_bits: float, stored_bits: float) -> float:
    """How many times smaller the stored model is than the reference.

    >>> compression_ratio(3200, 800)
    4.0
    """
    if stored_bits <= 0:
        raise ValueError("stored_bits must be positive")
    return reference_bits / stored_bits
