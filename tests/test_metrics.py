import math

import numpy as np
import pytest

from cl_compress import metrics

R = [[0.95, None, None, None],
     [0.90, 0.97, None, None],
     [0.93, 0.80, 0.99, None],
     [0.70, 0.85, 0.90, 0.96]]


def test_definitions_by_hand():
    assert metrics.average_accuracy(R) == pytest.approx((0.70 + 0.85 + 0.90 + 0.96) / 4)
    assert metrics.backward_transfer(R) == pytest.approx(((0.70 - 0.95) + (0.85 - 0.97) + (0.90 - 0.99)) / 3)
    # max-based: task 0 peaked at 0.95, task 1 at 0.97, task 2 at 0.99
    assert metrics.forgetting(R) == pytest.approx(((0.95 - 0.70) + (0.97 - 0.85) + (0.99 - 0.90)) / 3)
    assert metrics.plasticity(R) == pytest.approx((0.95 + 0.97 + 0.99 + 0.96) / 4)


def test_max_forgetting_differs_from_first_when_a_task_improves():
    M = [[0.5, None], [0.9, 0.9]]  # task 0 improved after being learned
    M3 = [[0.5, None, None], [0.9, 0.9, None], [0.6, 0.9, 1.0]]
    assert metrics.forgetting(M3) == pytest.approx(((0.9 - 0.6) + 0.0) / 2)
    assert metrics.backward_transfer(M3) == pytest.approx(((0.6 - 0.5) + 0.0) / 2)
    # Chaudhry's max runs over rows 0..T-2 only, so a task that improved at the end
    # has negative forgetting, like BWT
    assert metrics.forgetting(M) == pytest.approx(0.5 - 0.9)


def test_incomplete_last_row_rejected():
    with pytest.raises(ValueError):
        metrics.average_accuracy([[0.9, None], [0.8, None]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_avalanche_functional_forgetting(seed):
    """BWT == -mean(Avalanche forgetting of the last row); our max-based forgetting is
    >= Avalanche's first-based one, with equality when the diagonal is each column's max."""
    from avalanche.evaluation.functional import forgetting as av_forgetting

    rng = np.random.default_rng(seed)
    T = 5
    A = np.tril(rng.uniform(0.3, 1.0, size=(T, T)))
    mat = [[float(A[i, j]) if j <= i else None for j in range(T)] for i in range(T)]
    square = np.where(np.tril(np.ones((T, T))) > 0, A, 0.0)
    av = av_forgetting(square)
    assert metrics.backward_transfer(mat) == pytest.approx(-av[-1, :-1].mean())
    assert metrics.forgetting(mat) >= -metrics.backward_transfer(mat) - 1e-12
    # make every task peak right after it was learned -> both definitions agree
    for j in range(T):
        A[j, j] = 1.0 + j
    mat = [[float(A[i, j]) if j <= i else None for j in range(T)] for i in range(T)]
    av = av_forgetting(np.where(np.tril(np.ones((T, T))) > 0, A, 0.0))
    assert metrics.forgetting(mat) == pytest.approx(av[-1, :-1].mean())
    assert not math.isnan(metrics.forgetting(mat))
