"""Low-rank projection with energy transfer (LRPET; Guo et al., 2022).

LRPET trains a compact network by alternating ordinary gradient steps with a projection
of every weight onto rank ``k``. The projection is a truncated SVD whose kept singular
values are rescaled so that the Frobenius energy removed with the tail is handed back
to the head ("energy transfer"). A convolution followed by BatchNorm is projected in the
BN-rectified space ``diag(a) W`` with ``a = gamma / sqrt(running_var + eps)``. At the
end the rank-``k`` weight is stored as two thin factors (a ``k``-channel conv followed
by a 1x1 conv, or two linear layers).

Conv weights ``(out, in, kh, kw)`` are handled as ``(out, in*kh*kw)`` matrices.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Regulariser of the authors' un-rectification ``a / (a^2 + 1e-5)`` (a stable 1/a).
UNRECTIFY_REG = 1e-5


def as_matrix(w: Tensor) -> Tensor:
    """View a Linear ``(out, in)`` or Conv ``(out, in, kh, kw)`` weight as ``(out, -1)``."""
    return w.reshape(w.shape[0], -1)


def full_rank(shape: torch.Size | tuple[int, ...]) -> int:
    """Number of singular values of a weight of this shape: ``min(out, in*kh*kw)``."""
    fan_in = 1
    for d in shape[1:]:
        fan_in *= int(d)
    return min(int(shape[0]), fan_in)


def choose_rank(shape: torch.Size | tuple[int, ...], rank: int = 0, ratio: float = 1.0) -> int:
    """Rank kept for a weight: an explicit ``rank`` (capped at full rank) or, when
    ``rank`` is 0, the fraction ``ratio`` of the full rank (at least 1).

    >>> choose_rank((256, 784), ratio=0.125), choose_rank((64, 3, 3, 3), rank=40)
    (32, 27)
    """
    n = full_rank(shape)
    k = rank if rank > 0 else int(n * ratio + 1e-9)
    return max(1, min(n, k))


def energy_transfer(s: Tensor, k: int, rho: float = 0.0) -> Tensor:
    """Rescale singular values ``s`` (descending) so the total energy is preserved.

    The tail ``s[k:]`` is multiplied by ``rho`` (the authors' ``redu_fac``; 0 is hard
    truncation) and the head by ``sqrt(alpha)`` with
    ``alpha = (||s||^2 - ||rho * s[k:]||^2) / ||s[:k]||^2``, hence
    ``||s'||^2 == ||s||^2``. A head without energy is left unchanged.
    """
    head, tail = s[:k], rho * s[k:]
    return torch.cat([head * transfer_alpha(s, k, rho) ** 0.5, tail])


def transfer_alpha(s: Tensor, k: int, rho: float = 0.0) -> float:
    """Energy-transfer factor ``alpha = (||s||^2 - ||rho * s[k:]||^2) / ||s[:k]||^2`` of
    singular values ``s`` (descending); 1.0 for a head without energy. The kept singular
    values are multiplied by ``sqrt(alpha)``: ``alpha * ||s[:k]||^2 = ||s[:k]||^2 + removed *
    ||s||^2`` with ``removed = removed_energy(s, k, rho)`` (``alpha = 1 / (1 - removed)`` when
    ``rho == 0``).

    >>> transfer_alpha(torch.tensor([3.0, 1.0]), 1)
    1.1111111111111112
    """
    sd = s.double()
    head_energy = float(sd[:k].square().sum())
    if head_energy <= 0:
        return 1.0
    return (float(sd.square().sum()) - rho * rho * float(sd[k:].square().sum())) / head_energy


def removed_energy(s: Tensor, k: int, rho: float = 0.0) -> float:
    """Fraction of the energy a projection removes from the tail ``s[k:]`` (scaled by
    ``rho``): ``(1 - rho^2) * tail_energy(s, k)``; 0 if ``s`` is 0.

    >>> round(removed_energy(torch.tensor([3.0, 1.0]), 1, rho=0.5), 12)
    0.075
    """
    return (1.0 - rho * rho) * tail_energy(s, k)


def bn_row_scale(bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    """BN rectification factor ``a = gamma / sqrt(running_var + eps)`` per channel.

    A BN without affine weight or without running statistics counts as ``gamma = 1``
    or ``var = 1`` respectively.
    """
    var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(var)
    return (gamma.detach() / torch.sqrt(var.detach() + bn.eps)).to(var.dtype)


def project(w: Tensor, k: int, *, transfer: bool = True, rho: float = 0.0,
            row_scale: Tensor | None = None, return_spectrum: bool = False
            ) -> Tensor | tuple[Tensor, Tensor]:
    """LRPET projection of ``w`` onto rank ``k`` (``fcConvWeightReguViaSVB_redu``).

    Steps: rectify the rows by ``row_scale`` (BN factor ``a``, if given), SVD, keep the
    ``k`` leading singular values and scale the rest by ``rho``, transfer the removed
    energy to the kept ones if ``transfer``, rebuild, un-rectify with
    ``a / (a^2 + 1e-5)``. With ``rho == 0`` the result has rank at most ``k``.
    Returns a tensor of ``w``'s shape and dtype (and, if ``return_spectrum``, the
    singular values before projection); ``w`` itself is not modified.
    """
    m = as_matrix(w.detach()).to(torch.float64)
    if row_scale is not None:
        a = row_scale.detach().to(m)
        m = a[:, None] * m
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    if transfer:
        s_new = energy_transfer(s, k, rho)
    else:
        s_new = torch.cat([s[:k], rho * s[k:]])
    out = (u * s_new) @ vh
    if row_scale is not None:
        out = (a / (a.square() + UNRECTIFY_REG))[:, None] * out
    out = out.to(w.dtype).reshape(w.shape)
    return (out, s) if return_spectrum else out


def tail_energy(s: Tensor, k: int) -> float:
    """Fraction of the energy beyond the ``k`` leading singular values (0 if ``s`` is 0).

    >>> tail_energy(torch.tensor([3.0, 1.0]), 1)
    0.1
    """
    total = float(s.double().square().sum())
    return float(s[k:].double().square().sum()) / total if total > 0 else 0.0


def truncate(w: Tensor, k: int) -> Tensor:
    """Plain rank-``k`` SVD truncation (no energy transfer): the nearest rank-``k``
    matrix in Frobenius norm (Eckart-Young)."""
    return project(w, k, transfer=False)


def factorize(w: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Thin factors ``(U, V)`` with ``U @ V`` the rank-``k`` truncation of ``w``.

    ``U`` is ``(out, k)`` and ``V`` is ``(k, in*kh*kw)``; ``sqrt(sigma)`` is split
    between them as in the authors' ``channel_decompose_guss``. For a conv, ``V`` is a
    ``k``-channel ``kh x kw`` conv and ``U`` a 1x1 conv.
    """
    m = as_matrix(w.detach()).to(torch.float64)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    r = s[:k].sqrt()
    return (u[:, :k] * r).to(w.dtype), (r[:, None] * vh[:k]).to(w.dtype)


def reconstruct(u: Tensor, v: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Dense weight of shape ``shape`` from thin factors: ``(U @ V).reshape(shape)``."""
    return (u @ v).reshape(shape)


def numerical_rank(w: Tensor, rtol: float = 1e-5) -> int:
    """Number of singular values above ``rtol * sigma_1`` (0 for a zero matrix)."""
    s = torch.linalg.svdvals(as_matrix(w.detach()).to(torch.float64))
    if s.numel() == 0 or s[0] == 0:
        return 0
    return int((s > rtol * s[0]).sum())


def factor_params(shape: torch.Size | tuple[int, ...], k: int) -> int:
    """Parameters of the two thin factors of a rank-``k`` weight: ``k * (out + fan_in)``.

    >>> factor_params((256, 784), 32)
    33280
    """
    fan_in = 1
    for d in shape[1:]:
        fan_in *= int(d)
    return k * (int(shape[0]) + fan_in)


@torch.no_grad()
def conv_bn_pairs(body: nn.Module, input_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    """Names of the Conv2d layers whose output feeds a BatchNorm directly, with that BN.

    Found by tracing one forward pass (data flow, not module order: the authors pair
    by ordinal position, which silently mispairs a net with a conv lacking BN).
    """
    outputs: dict[int, tuple[str, Tensor]] = {}  # outputs kept alive so ids stay unique
    pairs: dict[str, nn.Module] = {}

    def seen_conv(name: str):
        return lambda mod, inp, out: outputs.__setitem__(id(out), (name, out))

    def seen_bn(mod, inp):
        if id(inp[0]) in outputs:
            pairs[outputs[id(inp[0])][0]] = mod

    hooks = []
    for name, m in body.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(seen_conv(name)))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            hooks.append(m.register_forward_pre_hook(seen_bn))
    was_training = body.training
    body.eval()
    try:
        body(torch.zeros(2, *input_shape))
    finally:
        body.train(was_training)
        for h in hooks:
            h.remove()
    return pairs
