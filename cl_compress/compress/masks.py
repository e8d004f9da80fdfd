"""Owner-index masks for parameter isolation by pruning (PackNet, Mallya & Lazebnik, CVPR 2018).

Convention (stable API, shared by PackNet and Ada-QPacknet)
-----------------------------------------------------------
Every prunable weight tensor ``w`` has an *owner index* ``owner``: a ``torch.uint8`` tensor
of the same shape where

* ``FREE = 0``          the entry belongs to no task: its value is zero and no task uses it;
* ``code = t + 1``      the entry is owned by (0-based) task ``t`` (see :func:`owner_code`).

So at most 255 tasks fit. Task ``j`` sees every entry owned by tasks ``0..j``
(:func:`visible_mask`); while task ``t`` trains, only the entries it owns move
(:func:`trainable_mask`) and entries of earlier tasks are frozen (:func:`frozen_mask`).
A new task claims every free entry (:func:`claim_free`); after training it releases the
smallest-magnitude fraction of its own entries (:func:`magnitude_prune`).

Storing the index costs :func:`index_bits` bits per entry; :func:`pack_bits` /
:func:`unpack_bits` pack it into exactly that many bits (vectorised torch ops), and
:func:`pack_layer` / :func:`unpack_layer` store a layer as packed index + used values.

All functions are pure (they return new tensors) and deterministic, so every DDP rank
that holds the same weights reaches the same masks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cl_compress.compress import packing

FREE = 0
MAX_TASKS = 255


def owner_code(task: int) -> int:
    """The owner-index value of 0-based task ``task`` (``task + 1``; 0 means free)."""
    if not 0 <= task < MAX_TASKS:
        raise ValueError(f"task {task} is outside 0..{MAX_TASKS - 1} (uint8 owner index)")
    return task + 1


def new_owner_index(weight: Tensor) -> Tensor:
    """An all-free owner index for ``weight`` (uint8 zeros, same shape and device)."""
    return torch.zeros(weight.shape, dtype=torch.uint8, device=weight.device)


def claim_free(owner: Tensor, task: int) -> Tensor:
    """Give every free entry to ``task`` (PackNet's start of a new task)."""
    return torch.where(owner == FREE, torch.full_like(owner, owner_code(task)), owner)


def visible_mask(owner: Tensor, task: int) -> Tensor:
    """Entries task ``task`` may use at inference: owned by a task ``<= task``."""
    return (owner != FREE) & (owner <= owner_code(task))


def trainable_mask(owner: Tensor, task: int) -> Tensor:
    """Entries that may change while ``task`` trains: the ones it owns."""
    return owner == owner_code(task)


def frozen_mask(owner: Tensor, task: int) -> Tensor:
    """Entries owned by tasks before ``task`` (must stay bit-identical while it trains)."""
    return (owner != FREE) & (owner < owner_code(task))


def prune_count(n: int, ratio: float) -> int:
    """How many of ``n`` entries a prune ``ratio`` removes: ``ratio * n`` rounded half up.

    >>> prune_count(10, 0.25), prune_count(10, 0.24), prune_count(3, 0.5), prune_count(0, 0.5)
    (3, 2, 2, 0)
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"prune ratio {ratio} is outside [0, 1]")
    return min(n, max(0, int(math.floor(ratio * n + 0.5))))


def smallest_k(scores: Tensor, candidates: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly ``k`` candidate entries with the smallest ``scores``.

    Ties are broken by flat position (stable sort), so exactly ``k`` entries are chosen,
    deterministically, even when many scores are equal (e.g. zeros).
    """
    flat_c = candidates.reshape(-1)
    idx = torch.nonzero(flat_c).flatten()
    if k > idx.numel():
        raise ValueError(f"cannot choose {k} of {idx.numel()} candidates")
    out = torch.zeros_like(flat_c, dtype=torch.bool)
    if k > 0:
        vals = scores.reshape(-1)[idx]
        order = torch.sort(vals, stable=True).indices[:k]
        out[idx[order]] = True
    return out.view(candidates.shape)


def magnitude_prune(weight: Tensor, owner: Tensor, task: int, ratio: float) -> tuple[Tensor, int]:
    """Release the ``ratio`` smallest-|w| entries that ``task`` owns (one layer).

    Returns the new owner index (pruned entries set to ``FREE``) and the number pruned,
    which is exactly ``prune_count(#owned, ratio)``. The caller zeroes the released
    values (``weight[owner == FREE] = 0``). PackNet prunes the same fraction per layer.
    """
    own = trainable_mask(owner, task)
    k = prune_count(int(own.sum()), ratio)
    drop = smallest_k(weight.detach().abs(), own, k)
    return owner.masked_fill(drop, FREE), k


def owned_counts(owner: Tensor, n_tasks: int) -> list[int]:
    """Entries owned by each task ``0..n_tasks-1`` (free entries are not counted)."""
    counts = torch.bincount(owner.reshape(-1).long(), minlength=n_tasks + 1)
    return [int(c) for c in counts[1:n_tasks + 1]]


def index_bits(n_tasks: int) -> int:
    """Bits per entry of an owner index that can name ``n_tasks`` tasks plus FREE.

    >>> [index_bits(n) for n in (1, 2, 3, 4, 7, 8, 255)]
    [1, 2, 2, 3, 3, 4, 8]
    """
    if not 1 <= n_tasks <= MAX_TASKS:
        raise ValueError(f"n_tasks={n_tasks} is outside 1..{MAX_TASKS}")
    return max(1, math.ceil(math.log2(n_tasks + 1)))


def pack_bits(values: Tensor, bits: int) -> Tensor:
    """Pack an owner index (values ``< 2**bits``, ``bits <= 8``) into a flat uint8 tensor
    (see :func:`cl_compress.compress.packing.pack_bits` for the layout)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits={bits} must be in 1..8")
    return packing.pack_bits(values, bits)


def unpack_bits(packed: Tensor, bits: int, numel: int) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``numel`` values as a flat uint8 tensor."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits={bits} must be in 1..8")
    return packing.unpack_bits(packed, bits, numel).to(torch.uint8)


def masked(weight: Tensor, owner: Tensor, task: int) -> Tensor:
    """``weight`` as task ``task`` sees it: entries not visible to it are zero."""
    return torch.where(visible_mask(owner, task), weight, torch.zeros_like(weight))


def pack_layer(weight: Tensor, owner: Tensor, bits: int) -> dict:
    """A layer as stored on disk: shape, owner index packed at ``bits`` bits per entry, and
    the values of the non-free entries only (flat order)."""
    w, o = weight.detach().cpu(), owner.cpu()
    return {"shape": list(w.shape), "owner": pack_bits(o, bits), "values": w[o != FREE].clone()}


def unpack_layer(layer: dict, bits: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`pack_layer`: ``(weight, owner)``, free entries zero."""
    shape = torch.Size(layer["shape"])
    owner = unpack_bits(layer["owner"], bits, shape.numel()).view(shape)
    weight = torch.zeros(shape, dtype=layer["values"].dtype)
    weight[owner != FREE] = layer["values"]
    return weight, owner
