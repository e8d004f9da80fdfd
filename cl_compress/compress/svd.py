"""SVD-factorised layers and the CACL regularisers (Teja & Panda 2020, arXiv 2009.01956).

A weight is trained as W = N · diag(|sigma|) · C, with N (out x r), sigma (r) and C
(r x in·k·k). Following the authors' layer (itself from Yang et al. 2020, "Learning
low-rank deep neural networks via singular vector orthogonality regularization and
singular value sparsification"), the forward pass builds N·diag(sqrt|sigma|) and
diag(sqrt|sigma|)·C, multiplies them into one dense weight and makes a single
``F.linear`` / ``F.conv2d`` call. Components are ordered: a continual learner freezes a
prefix of them and answers for an old task with the first ``r_t`` components only
(``active_rank``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_EPS = 1e-12


def param_matched_rank(fan_in: int, out: int) -> int:
    """Rank whose factors hold about as many numbers as the dense weight (CACL's initial
    rank): floor(fan_in * out / (out + fan_in)), at least 1.

    >>> param_matched_rank(784, 256), param_matched_rank(3 * 9, 64)
    (192, 18)
    """
    return max(1, (fan_in * out) // (out + fan_in))


def hoyer(sigma: Tensor) -> Tensor:
    """Hoyer sparsity measure ||s||_1 / ||s||_2 - 1 (0 for one non-zero entry, sqrt(n)-1 for
    n equal entries); CACL's default regulariser on the singular values."""
    return sigma.abs().sum() / (sigma.norm() + _EPS) - 1.0


def hoyer_square(sigma: Tensor) -> Tensor:
    """Hoyer-Square ||s||_1^2 / ||s||_2^2 (Yang et al. 2020, DeepHoyer)."""
    return sigma.abs().sum() ** 2 / (sigma.pow(2).sum() + _EPS)


def l1(sigma: Tensor) -> Tensor:
    """Plain L1 norm of the singular values."""
    return sigma.abs().sum()


SPARSITY = {"hoyer": hoyer, "hoyer_square": hoyer_square, "l1": l1}


def orthogonality(m: Tensor) -> Tensor:
    """||G - I||_F^2 / d^2 with G the smaller Gram matrix of ``m`` (d x d): pushes the
    columns of a tall factor (or the rows of a wide one) towards an orthonormal set."""
    if m.numel() == 0:
        return m.sum()
    g = m @ m.t() if m.shape[0] <= m.shape[1] else m.t() @ m
    d = g.shape[0]
    return (g - torch.eye(d, dtype=m.dtype, device=m.device)).pow(2).sum() / (d * d)


def gram_error(rows: Tensor) -> Tensor:
    """||rows·rows^T - I||_F^2 (unnormalised): the frozen block of ``orthogonality_frozen``."""
    with torch.no_grad():
        eye = torch.eye(rows.shape[0], dtype=rows.dtype, device=rows.device)
        return (rows @ rows.t() - eye).pow(2).sum()


def orthogonality_frozen(m: Tensor, frozen: int, frozen_term: Tensor | None = None) -> Tensor:
    """``orthogonality(m)`` for a component-major ``m`` (r x d) whose first ``frozen`` rows
    are frozen: same value, same gradient for the trainable rows, but the constant
    frozen-frozen block of the Gram (``frozen_term`` = ||G_oo - I||_F^2, computed here when
    not given) is not recomputed and carries no gradient. Falls back to the full Gram when
    d < r (the smaller Gram then is d x d)."""
    r, d = m.shape
    if frozen <= 0 or d < r:
        return orthogonality(m)
    old, new = m[:frozen].detach(), m[frozen:]
    if frozen_term is None:
        frozen_term = gram_error(old)
    eye = torch.eye(r - frozen, dtype=m.dtype, device=m.device)
    cross = (old @ new.t()).pow(2).sum()
    return (frozen_term + 2 * cross + (new @ new.t() - eye).pow(2).sum()) / (r * r)


def energy_keep_mask(sigma: Tensor, energy_sv: float) -> Tensor:
    """Which components to keep so that at least (1 - energy_sv) of sum(sigma^2) remains.

    The smallest set of largest |sigma| reaching that energy fixes a threshold; every
    component with |sigma| >= threshold is kept (CACL's per-task truncation, applied to the
    new components only). All-zero input keeps nothing.

    >>> energy_keep_mask(torch.tensor([0.1, -3.0, 0.0, 2.0]), 0.01).tolist()
    [False, True, False, True]
    """
    e = sigma.detach().pow(2)
    total = float(e.sum())
    if sigma.numel() == 0 or total <= 0.0:
        return torch.zeros_like(sigma, dtype=torch.bool)
    sorted_e, _ = torch.sort(e, descending=True)
    cum = torch.cumsum(sorted_e, 0)
    k = int((cum < (1.0 - energy_sv) * total).sum()) + 1  # count needed to reach the target
    k = min(k, sigma.numel())
    threshold = sorted_e[k - 1]
    return (e >= threshold) & (e > 0)


def kaiming_factors(out: int, fan_in: int, rank: int,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Fresh (N, sigma, C): kaiming-normal N (fan-in r) and C (fan-in ``fan_in``) and a
    standard-normal sigma, as in the authors' layer; N·diag|sigma|·C then has entries of
    variance 4/fan_in (twice a kaiming-normal dense weight's)."""
    n = torch.randn(out, rank, generator=generator) * math.sqrt(2.0 / max(1, rank))
    c = torch.randn(rank, fan_in, generator=generator) * math.sqrt(2.0 / fan_in)
    s = torch.randn(rank, generator=generator)
    return n, s, c


class SVDFactorized(nn.Module):
    """Shared part of :class:`SVDLinear` and :class:`SVDConv2d`: the factors and the rank
    bookkeeping. ``active_rank=None`` uses every component (training); an int ``k`` uses
    the first ``k`` (answering for an old task)."""

    def __init__(self, out: int, fan_in: int, rank: int, bias: Tensor | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.out, self.fan_in = out, fan_in
        n, s, c = kaiming_factors(out, fan_in, rank, generator)
        self.N, self.sigma, self.C = nn.Parameter(n), nn.Parameter(s), nn.Parameter(c)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.active_rank: int | None = None
        self.frozen_rank = 0
        self._frozen_w: Tensor | None = None

    @property
    def rank(self) -> int:
        """Number of component slots (frozen + trainable)."""
        return self.sigma.shape[0]

    def _partial(self, lo: int, hi: int) -> Tensor:
        root = self.sigma[lo:hi].abs().sqrt()
        return (self.N[:, lo:hi] * root).contiguous() @ (root[:, None] * self.C[lo:hi])

    def dense_weight(self) -> Tensor:
        """N[:, :k]·diag(|sigma[:k]|)·C[:k] as an (out x fan_in) matrix, k = active rank.

        With every component active and a frozen prefix (``freeze_prefix``), the frozen
        part's product is computed once and cached: the same weight, a cheaper step."""
        if self.active_rank is not None:
            return self._partial(0, self.active_rank)
        r = self.frozen_rank
        if r == 0:
            return self._partial(0, self.rank)
        if self._frozen_w is None or self._frozen_w.device != self.N.device:
            with torch.no_grad():
                self._frozen_w = self._partial(0, r)
        return self._frozen_w + self._partial(r, self.rank)

    def freeze_prefix(self, r: int) -> None:
        """Declare the first ``r`` components frozen (their product may be cached)."""
        self.frozen_rank, self._frozen_w = int(r), None

    def folded_factors(self, k: int) -> tuple[Tensor, Tensor]:
        """(N·diag sqrt|sigma|, diag sqrt|sigma|·C) of the first ``k`` components: what is
        stored, since their product is the weight."""
        root = self.sigma[:k].detach().abs().sqrt()
        return (self.N[:, :k].detach() * root).contiguous(), (root[:, None] * self.C[:k].detach())

    def thin_factors(self) -> tuple[Tensor, Tensor, Tensor | None, dict | None] | None:
        """``(U, V, bias, conv)`` of the weight as the layer answers now (its active rank):
        what a deployed model multiplies (``cl_compress.engine.flops``); ``conv`` is None for a
        linear layer."""
        u, v = self.folded_factors(self.active_rank if self.active_rank is not None else self.rank)
        return u, v, None if self.bias is None else self.bias.detach(), self._conv_args()

    def _conv_args(self) -> dict | None:
        return None

    @torch.no_grad()
    def set_factors(self, n: Tensor, sigma: Tensor, c: Tensor) -> None:
        """Replace the factors (new shapes allowed: compaction, growth)."""
        dev = self.N.device
        self.N = nn.Parameter(n.to(dev).contiguous())
        self.sigma = nn.Parameter(sigma.to(dev).contiguous())
        self.C = nn.Parameter(c.to(dev).contiguous())
        self.freeze_prefix(0)


class SVDLinear(SVDFactorized):
    """``nn.Linear`` trained as N·diag|sigma|·C."""

    def __init__(self, in_features: int, out_features: int, rank: int,
                 bias: Tensor | None = None, generator: torch.Generator | None = None):
        super().__init__(out_features, in_features, rank, bias, generator)

    @classmethod
    def from_dense(cls, layer: nn.Linear, rank: int,
                   generator: torch.Generator | None = None) -> SVDLinear:
        return cls(layer.in_features, layer.out_features, rank, layer.bias, generator)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in={self.fan_in}, out={self.out}, rank={self.rank}, active={self.active_rank}"


class SVDConv2d(SVDFactorized):
    """``nn.Conv2d`` (groups=1) trained as N·diag|sigma|·C with C over in·kh·kw ("channel"
    decomposition); stride, padding and dilation of the original conv are kept."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 rank: int, stride=1, padding=0, dilation=1, bias: Tensor | None = None,
                 generator: torch.Generator | None = None):
        super().__init__(out_channels, in_channels * kernel_size[0] * kernel_size[1], rank,
                         bias, generator)
        self.in_channels, self.kernel_size = in_channels, tuple(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, rank: int,
                   generator: torch.Generator | None = None) -> SVDConv2d:
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("SVDConv2d supports groups=1 and zero padding only")
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, rank, conv.stride,
                   conv.padding, conv.dilation, conv.bias, generator)

    def _conv_args(self) -> dict | None:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "kernel": (self.in_channels, *self.kernel_size)}

    def forward(self, x: Tensor) -> Tensor:
        w = self.dense_weight().view(self.out, self.in_channels, *self.kernel_size)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, rank={self.rank}, active={self.active_rank}")


def factorize_modules(root: nn.Module, kinds: tuple[str, ...], rank_rule: str,
                      generator: torch.Generator | None = None) -> list[str]:
    """Replace, in place, every ``nn.Linear`` ("linear") / ``nn.Conv2d`` ("conv") under
    ``root`` by its factorised twin; returns the replaced modules' dotted paths in order.

    ``rank_rule``: "param_matched" (CACL) or "full" (min(out, fan_in)).
    """
    paths: list[str] = []
    for path, mod in list(root.named_modules()):
        if isinstance(mod, nn.Linear) and "linear" in kinds:
            fan_in, out = mod.in_features, mod.out_features
            make = SVDLinear.from_dense
        elif isinstance(mod, nn.Conv2d) and "conv" in kinds and mod.groups == 1:
            fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
            out, make = mod.out_channels, SVDConv2d.from_dense
        else:
            continue
        r = param_matched_rank(fan_in, out) if rank_rule == "param_matched" else min(fan_in, out)
        parent_path, _, attr = path.rpartition(".")
        parent = root.get_submodule(parent_path) if parent_path else root
        setattr(parent, attr, make(mod, r, generator))  # type: ignore[arg-type]
        paths.append(path)
    return paths
