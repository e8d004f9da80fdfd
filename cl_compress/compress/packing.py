"""Bit packing of small non-negative integers (owner indices, quantisation codes).

Each value takes exactly ``bits`` bits, little-endian within a value and within a
byte, so ``n`` values take ``ceil(n * bits / 8)`` bytes. Vectorised torch ops only.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_BITS = 16


def pack_bits(values: Tensor, bits: int) -> Tensor:
    """Pack integers in ``[0, 2**bits)`` into a flat uint8 tensor.

    >>> pack_bits(torch.tensor([1, 2, 3]), 2).tolist()  # bits 10 01 11 -> 0b00111001
    [57]
    """
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bit-width must be in [1, {MAX_BITS}], got {bits}")
    v = values.reshape(-1).to(torch.int32)
    if v.numel() and (int(v.min()) < 0 or int(v.max()) >= 1 << bits):
        raise ValueError(f"values must lie in [0, {1 << bits}) to pack at {bits} bits")
    shifts = torch.arange(bits, dtype=torch.int32, device=v.device)
    stream = ((v.unsqueeze(1) >> shifts) & 1).reshape(-1)
    pad = (-stream.numel()) % 8
    if pad:
        stream = torch.cat([stream, stream.new_zeros(pad)])
    weights = torch.arange(8, dtype=torch.int32, device=v.device)
    return (stream.view(-1, 8) << weights).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: Tensor, bits: int, n: int) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``n`` values, as int64.

    >>> unpack_bits(pack_bits(torch.tensor([5, 0, 7]), 3), 3, 3).tolist()
    [5, 0, 7]
    """
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bit-width must be in [1, {MAX_BITS}], got {bits}")
    if n * bits > packed.numel() * 8:
        raise ValueError(f"{packed.numel()} bytes hold fewer than {n} values of {bits} bits")
    shifts = torch.arange(8, dtype=torch.int32, device=packed.device)
    stream = ((packed.reshape(-1, 1).to(torch.int32) >> shifts) & 1).reshape(-1)
    b = stream[: n * bits].view(n, bits).to(torch.int64)
    return (b << torch.arange(bits, dtype=torch.int64, device=packed.device)).sum(dim=1)
