"""Weight quantisers and bit packing (Ada-QPacknet, Pietroń et al., ECAI 2023).

Every quantiser maps a 1-D float tensor to integer *codes* plus a small *table*
such that the dequantised value of a weight is ``table[code]``:

* linear symmetric: levels ``(i - q_max) * scale`` with ``q_max = 2**(b-1) - 1``;
* linear asymmetric: levels ``offset + i * scale`` spanning ``[min, max]``;
* non-linear: a 1-D k-means codebook of ``2**b`` centroids (the paper's
  "non-linear quantisation"; the authors fit it with sklearn, here it is an exact
  vectorised Lloyd iteration on the sorted values).

For the linear quantisers only ``scale`` (and ``offset``) need to be stored; the table is
rebuilt by :func:`linear_levels`, bit-identically. Codes are stored with
:func:`pack_bits` at their bit-width.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from cl_compress.compress.packing import pack_bits, unpack_bits

LINEAR_METHODS = ("linear_sym", "linear_asym")
METHODS = ("kmeans", *LINEAR_METHODS)


def bits_for(n_values: int) -> int:
    """Bits needed to index ``n_values`` distinct values (at least 1).

    >>> [bits_for(n) for n in (1, 2, 3, 6, 64, 65)]
    [1, 1, 2, 3, 6, 7]
    """
    return max(1, math.ceil(math.log2(max(1, n_values))))


def min_bits(method: str) -> int:
    """Smallest usable bit-width: symmetric linear needs 2 bits (levels -s, 0, s)."""
    return 2 if method == "linear_sym" else 1


def linear_levels(params: Tensor, bits: int, symmetric: bool) -> Tensor:
    """The ``2**bits`` float32 levels of a linear quantiser from its stored params.

    Symmetric (``params = [scale]``): ``(i - q_max) * scale``, so zero and the sign
    symmetry are exact. Asymmetric (``params = [scale, offset]``): ``offset + i * scale``.
    """
    i = torch.arange(2 ** bits, dtype=torch.float32)
    scale = params[0].float()
    if symmetric:
        return (i - (2 ** (bits - 1) - 1)) * scale
    return params[1].float() + i * scale


def linear_params(x: Tensor, bits: int, symmetric: bool) -> Tensor:
    """Per-tensor parameters of a linear quantiser covering ``x`` (float32).

    Symmetric: ``[max|x| / q_max]`` with ``q_max = 2**(b-1) - 1``.
    Asymmetric: ``[(max - min) / (2**b - 1), min]``.
    A constant (or empty) ``x`` gets ``scale = 1`` so that its value is a level.
    """
    x = x.detach().float().reshape(-1)
    one = torch.tensor(1.0)
    if symmetric:
        q_max = 2 ** (bits - 1) - 1
        if q_max < 1:
            raise ValueError("symmetric linear quantisation needs at least 2 bits")
        amax = x.abs().max() if x.numel() else torch.tensor(0.0)
        return (amax / q_max if amax > 0 else one).reshape(1)
    if x.numel() == 0:
        return torch.stack([one, torch.tensor(0.0)])
    lo, hi = x.min(), x.max()
    scale = (hi - lo) / (2 ** bits - 1) if hi > lo else one
    return torch.stack([scale, lo])


def linear_codes(x: Tensor, params: Tensor, bits: int, symmetric: bool) -> Tensor:
    """Codes of ``x`` for a linear quantiser: the index of the nearest level."""
    x = x.detach().float().reshape(-1)
    if symmetric:
        q = torch.round(x / params[0]) + (2 ** (bits - 1) - 1)
    else:
        q = torch.round((x - params[1]) / params[0])
    return q.clamp_(0, 2 ** bits - 1).to(torch.int64)


def kmeans_1d(x: Tensor, k: int, iters: int = 3000) -> tuple[Tensor, Tensor]:
    """1-D k-means: ``(centroids, codes)`` with centroids sorted ascending.

    Quantile initialisation (deterministic), then Lloyd iterations computed on the
    sorted values: the assignment step is a ``searchsorted`` of the mid-points
    between centroids and the update step uses prefix sums, so one iteration is
    ``O(k log n)`` after an ``O(n log n)`` sort (a million weights take well under a
    second). Stops when no assignment changes (converged); when ``iters`` iterations end
    first, a ``RuntimeWarning`` names the change still under way (moved boundaries and the
    largest centroid move of the last iteration). Empty clusters keep their centroid.
    When ``x`` has at most ``k`` distinct values the codebook is exact.
    """
    if k < 1:
        raise ValueError(f"k-means needs k >= 1, got {k}")
    x = x.detach().reshape(-1).double()
    n = x.numel()
    if n == 0:
        return torch.zeros(k), torch.zeros(0, dtype=torch.int64)
    xs, order = torch.sort(x)
    uniq = torch.unique_consecutive(xs)
    if uniq.numel() <= k:
        cent = torch.cat([uniq, uniq[-1].repeat(k - uniq.numel())])
        return cent.float(), _assign(x, cent.float())
    csum = torch.cat([x.new_zeros(1), torch.cumsum(xs, 0)])
    q = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    cent = xs[(q * n).long().clamp_(max=n - 1)]
    cuts, converged, moved, shift = None, False, 0, 0.0
    for _ in range(max(1, iters)):
        new_cuts = torch.searchsorted(xs, (cent[1:] + cent[:-1]) / 2, right=True)
        if cuts is not None and torch.equal(new_cuts, cuts):
            converged = True
            break
        moved = int((new_cuts != cuts).sum()) if cuts is not None else new_cuts.numel()
        cuts = new_cuts
        start = torch.cat([cuts.new_zeros(1), cuts])
        end = torch.cat([cuts, cuts.new_full((1,), n)])
        count = (end - start).double()
        sums = csum[end] - csum[start]
        new_cent = torch.where(count > 0, sums / count.clamp(min=1), cent).sort().values
        shift = float((new_cent - cent).abs().max())
        cent = new_cent
    if not converged:  # one more assignment step tells whether the last update settled it
        last = torch.searchsorted(xs, (cent[1:] + cent[:-1]) / 2, right=True)
        if not torch.equal(last, cuts):
            warnings.warn(f"k-means (k={k}, n={n}) stopped at kmeans_iters={iters} before "
                          f"converging: {moved} of {k - 1} cluster boundaries still moved in the "
                          f"last iteration, largest centroid move {shift:.3g}; raise "
                          f"strategy.kmeans_iters", RuntimeWarning, stacklevel=2)
    cent = cent.float()
    return cent, _assign(x, cent)


def _assign(x: Tensor, cent: Tensor) -> Tensor:
    """Index of the nearest (sorted) centroid for every value of ``x``."""
    mids = (cent[1:].double() + cent[:-1].double()) / 2
    return torch.bucketize(x.double(), mids, right=False).to(torch.int64)


def quantize(x: Tensor, bits: int, method: str, iters: int = 3000,
             zeros: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Quantise a 1-D tensor: ``(codes, levels, params)``.

    ``levels[codes]`` are the dequantised values; ``params`` is what must be stored
    besides the codes: the codebook for ``kmeans``, ``[scale]`` for ``linear_sym`` and
    ``[scale, offset]`` for ``linear_asym``. ``zeros``: that many extra zero values take
    part in fitting the codebook/scale (not coded), e.g. the rest of the layer when the
    codebook is fitted on the whole masked layer as the Ada-QPacknet authors do.
    """
    if method not in METHODS:
        raise ValueError(f"unknown quantisation method {method!r}; choose one of {METHODS}")
    if not 1 <= bits <= 16:
        raise ValueError(f"bit-width must be in [1, 16], got {bits}")
    x = x.detach().reshape(-1)
    fit = torch.cat([x, x.new_zeros(zeros)]) if zeros > 0 else x
    if method == "kmeans":
        levels, _ = kmeans_1d(fit, 2 ** bits, iters)
        return _assign(x.double(), levels), levels, levels.clone()
    symmetric = method == "linear_sym"
    params = linear_params(fit, bits, symmetric)
    codes = linear_codes(x, params, bits, symmetric)
    return codes, linear_levels(params, bits, symmetric), params


def levels_from_params(params: Tensor, bits: int, method: str) -> Tensor:
    """Rebuild the level table of :func:`quantize` from its stored ``params``."""
    if method == "kmeans":
        return params.float()
    return linear_levels(params, bits, symmetric=method == "linear_sym")


def pack_owner_bitmaps(owner: Tensor, n_tasks: int) -> list[Tensor]:
    """Encode an owner index (``masks`` convention: 0 free, ``t + 1`` task ``t``) as one
    packed 1-bit map per task over the entries no earlier task owns.

    Lossless, and smaller than a fixed-width index when tasks prune: task ``t``'s map only
    spans the entries still unclaimed when ``t`` arrived (``sum_t |unclaimed_t|`` bits).
    """
    flat = owner.reshape(-1).to(torch.int64)
    open_ = torch.ones_like(flat, dtype=torch.bool)
    out = []
    for t in range(n_tasks):
        mine = flat[open_] == t + 1
        out.append(pack_bits(mine.to(torch.int64), 1))
        open_[torch.nonzero(open_).flatten()[mine]] = False
    return out


def unpack_owner_bitmaps(maps: list[Tensor], shape: tuple[int, ...] | list[int]) -> Tensor:
    """Inverse of :func:`pack_owner_bitmaps`: the uint8 owner index of ``shape``."""
    n = math.prod(shape)
    owner = torch.zeros(n, dtype=torch.uint8)
    open_idx = torch.arange(n)
    for t, packed in enumerate(maps):
        mine = unpack_bits(packed, 1, open_idx.numel()).bool()
        owner[open_idx[mine]] = t + 1
        open_idx = open_idx[~mine]
    return owner.view(*shape)


def owner_bitmap_bits(owner: Tensor, n_tasks: int) -> int:
    """Bits of :func:`pack_owner_bitmaps` before byte padding."""
    counts = torch.bincount(owner.reshape(-1).to(torch.int64), minlength=n_tasks + 1)
    claimed_before = torch.cumsum(counts[1:n_tasks + 1], 0) - counts[1:n_tasks + 1]
    return int((owner.numel() - claimed_before).sum())


def dequantise_tasks(owners: dict[str, Tensor], records: dict[int, dict], task: int) -> dict[str, Tensor]:
    """Dense weights that task ``task`` sees: the dequantised codes of tasks ``0..task`` at the
    entries they own (owner index ``t + 1``), zero elsewhere.

    ``records[t] = {"bits", "method", "layers": {name: {"codes", "n", "params"}}}`` holds, per
    layer, task ``t``'s packed codes (in the flat order of its owned entries) and the
    codebook/scale params of :func:`quantize`.
    """
    out = {}
    for name, owner in owners.items():
        w = torch.zeros(owner.shape)
        for t in range(task + 1):
            rec, layer = records[t], records[t]["layers"][name]
            levels = levels_from_params(layer["params"], rec["bits"], rec["method"])
            w[owner == t + 1] = levels[unpack_bits(layer["codes"], rec["bits"], layer["n"])]
        out[name] = w
    return out


def claimable(used: Tensor, reserve: int) -> Tensor:
    """Positions a new task may claim under shared bit capacity: those whose used bits
    leave room for ``reserve`` more in a 32-bit slot (``used < 32 - reserve``, the authors'
    rule)."""
    return used < 32 - reserve


def pack_shared_maps(held: list[Tensor], bits: list[int], reserve: int) -> list[Tensor]:
    """Encode which positions hold a code of each task (shared bit capacity): per task
    ``t`` a packed 1-bit map over the positions claimable when ``t`` started (derived from
    the earlier maps and bit-widths, so the decoder rebuilds them)."""
    used = torch.zeros(held[0].numel() if held else 0, dtype=torch.int32)
    out = []
    for h, b in zip(held, bits):
        h = h.reshape(-1).bool()
        claim = claimable(used, reserve)
        if bool((h & ~claim).any()):
            raise ValueError("a task holds codes at positions it could not claim")
        out.append(pack_bits(h[claim].to(torch.int64), 1))
        used += h.to(torch.int32) * b
    return out


def unpack_shared_maps(maps: list[Tensor], bits: list[int], reserve: int,
                       shape: tuple[int, ...] | list[int]) -> list[Tensor]:
    """Inverse of :func:`pack_shared_maps`: one boolean map of ``shape`` per task."""
    n = math.prod(shape)
    used = torch.zeros(n, dtype=torch.int32)
    out = []
    for packed, b in zip(maps, bits):
        idx = torch.nonzero(claimable(used, reserve)).flatten()
        h = torch.zeros(n, dtype=torch.bool)
        h[idx[unpack_bits(packed, 1, idx.numel()).bool()]] = True
        out.append(h.view(*shape))
        used += h.to(torch.int32) * b
    return out


def shared_map_bits(held: list[Tensor], bits: list[int], reserve: int) -> int:
    """Bits of :func:`pack_shared_maps` before byte padding (sum of claimable counts)."""
    used = torch.zeros(held[0].numel() if held else 0, dtype=torch.int32)
    total = 0
    for h, b in zip(held, bits):
        total += int(claimable(used, reserve).sum())
        used += h.reshape(-1).to(torch.int32) * b
    return total


def dequantise_own(held: dict[str, Tensor], record: dict) -> dict[str, Tensor]:
    """Dense weights of one task under shared bit capacity: its own dequantised codes where
    it holds them, zero elsewhere (the authors answer task ``j`` with task ``j``'s
    sub-network only)."""
    out = {}
    for name, h in held.items():
        layer = record["layers"][name]
        levels = levels_from_params(layer["params"], record["bits"], record["method"])
        w = torch.zeros(h.shape)
        w[h] = levels[unpack_bits(layer["codes"], record["bits"], layer["n"])]
        out[name] = w
    return out
