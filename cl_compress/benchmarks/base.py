"""Stream data structures and the fast in-memory loader every benchmark yields.

A benchmark is materialised once into tensors (one per experience); training then
slices those tensors directly, which keeps per-step Python overhead to a minimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from cl_compress.errors import ConfigError, DataError  # noqa: F401  (DataError re-exported)
from cl_compress.settings import SCENARIOS  # noqa: E402,F401  (re-exported)


@dataclass
class Experience:
    """One task of the stream: its training and test tensors and label space.

    In the task-incremental scenario labels are re-mapped to ``0..n_classes-1`` per
    experience (one head per task); in the class-incremental scenario labels are the
    global ones and every experience shares one head of ``Stream.n_classes`` outputs.
    """

    task_id: int
    classes: list[int]
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    n_outputs: int

    def split_validation(self, fraction: float, seed: int) -> tuple[Experience, Tensor, Tensor]:
        """Hold out ``fraction`` of the training split (stratification-free, seeded).

        Returns the experience with the reduced training set and the held-out (x, y).
        """
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
        n = self.train_x.shape[0]
        g = torch.Generator().manual_seed(seed * 7919 + self.task_id)
        perm = torch.randperm(n, generator=g)
        n_val = max(1, int(round(n * fraction)))
        val_idx, tr_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        reduced = Experience(
            self.task_id, self.classes, self.train_x[tr_idx], self.train_y[tr_idx],
            self.test_x, self.test_y, self.n_outputs,
        )
        return reduced, self.train_x[val_idx], self.train_y[val_idx]


@dataclass
class Stream:
    """A continual-learning benchmark: an ordered list of experiences."""

    name: str
    scenario: str
    input_shape: tuple[int, ...]
    n_classes: int
    experiences: list[Experience]
    source: str = "native"
    meta: dict = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return len(self.experiences)

    @property
    def head_sizes(self) -> list[int]:
        return [e.n_outputs for e in self.experiences]


class TensorTaskDataset(Dataset):
    """Dataset over in-memory tensors that serves whole batches via ``__getitems__``.

    ``DataLoader`` calls ``__getitems__`` with the list of indices of a batch, so a
    batch costs one tensor gather instead of ``batch_size`` Python calls + collate.
    Works with any sampler, including Lightning's ``DistributedSampler`` under DDP.
    """

    def __init__(self, x: Tensor, y: Tensor, task_id: int):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        self.x, self.y, self.task_id = x, y, task_id

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.task_id

    def __getitems__(self, idx: list[int]):
        index = torch.as_tensor(idx, dtype=torch.long)
        return self.x[index], self.y[index], self.task_id


def _batch_passthrough(batch):
    """Collate for ``__getitems__`` batches: they are already stacked."""
    return batch


def make_loader(
    x: Tensor, y: Tensor, task_id: int, batch_size: int, shuffle: bool, seed: int = 0
) -> DataLoader:
    """A DataLoader over tensors; shuffling is driven by a seeded generator."""
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        TensorTaskDataset(x, y, task_id), batch_size=batch_size, shuffle=shuffle,
        generator=gen, collate_fn=_batch_passthrough, num_workers=0,
    )


def split_by_classes(
    x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor, class_order: list[int],
    n_tasks: int, scenario: str,
) -> list[Experience]:
    """Partition a labelled dataset into ``n_tasks`` experiences of consecutive classes.

    Every class goes to exactly one experience (no class is dropped, unlike Avalanche's
    ``class_incremental_benchmark`` when the count does not divide); a count that
    does not divide evenly is an error.
    """
    n_cls = len(class_order)
    if n_tasks < 1 or n_cls % n_tasks:
        raise ConfigError(f"benchmark.n_tasks={n_tasks} must divide the {n_cls} classes evenly")
    per = n_cls // n_tasks
    exps = []
    for t in range(n_tasks):
        classes = class_order[t * per:(t + 1) * per]
        tr, te = _grouped(y_tr, classes), _grouped(y_te, classes)
        ytr, yte = y_tr[tr], y_te[te]
        if scenario == "task":
            lut = torch.full((int(max(class_order)) + 1,), -1, dtype=torch.long)
            lut[torch.tensor(classes)] = torch.arange(per)
            ytr, yte, n_out = lut[ytr], lut[yte], per
        else:
            n_out = n_cls
        exps.append(Experience(t, list(classes), x_tr[tr], ytr, x_te[te], yte, n_out))
    return exps


def permuted_tasks(
    x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor, n_tasks: int, seed: int,
    n_classes: int,
) -> list[Experience]:
    """Permuted-input tasks: task 0 is the identity, task t>0 a seeded pixel permutation."""
    d = x_tr[0].numel()
    g = torch.Generator().manual_seed(seed)
    exps = []
    for t in range(n_tasks):
        perm = torch.arange(d) if t == 0 else torch.randperm(d, generator=g)
        tr, te = _grouped(y_tr, range(n_classes)), _grouped(y_te, range(n_classes))
        ptr = x_tr[tr].flatten(1)[:, perm].reshape(x_tr[tr].shape)
        pte = x_te[te].flatten(1)[:, perm].reshape(x_te[te].shape)
        exps.append(Experience(t, list(range(n_classes)), ptr, y_tr[tr], pte, y_te[te], n_classes))
    return exps


def _grouped(y: Tensor, classes) -> Tensor:
    """Indices of the samples of ``classes``, grouped by class in the given order (stable
    within a class), which is how Avalanche's generators lay out an experience."""
    return torch.cat([torch.nonzero(y == c).flatten() for c in classes])
