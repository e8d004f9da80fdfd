"""Factorised layers, regularisers and energy truncation of CACL (cl_compress.compress.svd)."""

import math

import pytest
import torch
from torch import nn

from cl_compress.compress.svd import (
    SVDConv2d,
    SVDLinear,
    energy_keep_mask,
    factorize_modules,
    hoyer,
    hoyer_square,
    kaiming_factors,
    l1,
    orthogonality,
    orthogonality_frozen,
    param_matched_rank,
)


def test_param_matched_rank_matches_the_authors_first_conv():
    # 5-datasets run of the authors: conv1 3->64, k=3 has rank 18
    assert param_matched_rank(3 * 9, 64) == 18
    r = param_matched_rank(784, 256)
    assert r * (784 + 256) <= 784 * 256 < (r + 1) * (784 + 256)
    assert param_matched_rank(1, 1) == 1


def test_sparsity_measures():
    one_hot = torch.tensor([0.0, -2.0, 0.0, 0.0])
    flat = torch.full((9,), -0.5)
    assert hoyer(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert hoyer(flat).item() == pytest.approx(math.sqrt(9) - 1, rel=1e-6)
    assert hoyer_square(one_hot).item() == pytest.approx(1.0, rel=1e-6)
    assert hoyer_square(flat).item() == pytest.approx(9.0, rel=1e-6)
    assert l1(flat).item() == pytest.approx(4.5)
    # scale invariance of Hoyer: it measures shape, not size
    x = torch.tensor([3.0, 1.0, 0.5])
    assert hoyer(10 * x).item() == pytest.approx(hoyer(x).item(), rel=1e-6)
    assert torch.isfinite(hoyer(torch.zeros(3)))


def test_hoyer_gradient_shrinks_small_values_more():
    s = torch.tensor([3.0, 1.0, 0.1], requires_grad=True)
    hoyer(s).backward()
    # descending the gradient grows the largest value and shrinks the small ones
    assert s.grad[0] < 0 and s.grad[2] > 0


def test_orthogonality_zero_on_orthonormal_and_uses_smaller_gram():
    q, _ = torch.linalg.qr(torch.randn(7, 3))
    assert orthogonality(q).item() == pytest.approx(0.0, abs=1e-10)
    assert orthogonality(q.t()).item() == pytest.approx(0.0, abs=1e-10)
    m = 2 * q  # Gram = 4 I (3x3): ||3 I||^2 / 9 = 9*3/9
    assert orthogonality(m).item() == pytest.approx(3.0, rel=1e-5)
    assert orthogonality(torch.zeros(4, 0)).item() == 0.0


def test_energy_keep_mask():
    s = torch.tensor([0.1, -3.0, 0.0, 2.0, 1e-3])
    assert energy_keep_mask(s, 0.01).tolist() == [False, True, False, True, False]
    # energy 0 drops nothing non-zero; a loose threshold keeps only the top component
    assert energy_keep_mask(s, 0.0).tolist() == [True, True, False, True, True]
    assert energy_keep_mask(s, 0.5).tolist() == [False, True, False, False, False]
    # kept energy is at least (1 - energy_sv) of the total, for random inputs
    g = torch.Generator().manual_seed(0)
    for e in (1e-4, 0.05, 0.3):
        x = torch.randn(50, generator=g) ** 3
        keep = energy_keep_mask(x, e)
        assert x[keep].pow(2).sum() >= (1 - e) * x.pow(2).sum() - 1e-6
        # and minimal: dropping the smallest kept component goes below the target
        kept = x[keep].pow(2).sort().values
        assert kept[1:].sum() < (1 - e) * x.pow(2).sum()
    assert not energy_keep_mask(torch.zeros(3), 0.1).any()
    assert energy_keep_mask(torch.zeros(0), 0.1).numel() == 0


def test_svd_linear_is_n_abs_sigma_c():
    layer = SVDLinear(5, 4, rank=3, bias=torch.arange(4.0))
    with torch.no_grad():
        layer.sigma[1] = -layer.sigma[1].abs()  # sign is ignored: |sigma|
    w = layer.N @ torch.diag(layer.sigma.abs()) @ layer.C
    x = torch.randn(6, 5)
    torch.testing.assert_close(layer(x), x @ w.t() + torch.arange(4.0))
    layer.active_rank = 2
    w2 = layer.N[:, :2] @ torch.diag(layer.sigma[:2].abs()) @ layer.C[:2]
    torch.testing.assert_close(layer(x), x @ w2.t() + torch.arange(4.0))
    a, b = layer.folded_factors(2)
    torch.testing.assert_close(a @ b, w2)


def test_svd_conv_matches_dense_conv_with_product_weight():
    dense = nn.Conv2d(2, 3, (3, 2), stride=2, padding=1, bias=False)
    layer = SVDConv2d.from_dense(dense, rank=4)
    assert layer.fan_in == 12 and layer.C.shape == (4, 12) and layer.N.shape == (3, 4)
    w = (layer.N @ torch.diag(layer.sigma.abs()) @ layer.C).view(3, 2, 3, 2)
    x = torch.randn(2, 2, 7, 6)
    torch.testing.assert_close(layer(x), nn.functional.conv2d(x, w, None, 2, 1))
    assert layer(x).shape == dense(x).shape


def test_kaiming_factors_scale_and_seed():
    n, s, c = kaiming_factors(200, 300, 150, torch.Generator().manual_seed(1))
    w = n @ torch.diag(s.abs()) @ c
    assert w.std().item() == pytest.approx(math.sqrt(4 / 300), rel=0.1)
    n2, _, _ = kaiming_factors(200, 300, 150, torch.Generator().manual_seed(1))
    assert torch.equal(n, n2)


def test_factorize_modules_replaces_in_place_and_trains():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 8),
                        nn.ReLU(), nn.Linear(8, 2))
    paths = factorize_modules(net, ("conv", "linear"), "param_matched")
    assert paths == ["0", "3", "5"]
    assert isinstance(net[0], SVDConv2d) and isinstance(net[3], SVDLinear)
    assert net[0].rank == param_matched_rank(9, 4) and net[3].rank == param_matched_rank(64, 8)
    assert net[3].bias is not None and net[0].bias is not None
    out = net(torch.randn(3, 1, 6, 6))
    out.sum().backward()
    assert net[0].N.grad is not None and net[3].sigma.grad is not None
    only_linear = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    assert factorize_modules(only_linear, ("linear",), "full") == ["2"]
    assert only_linear[2].rank == 2 and isinstance(only_linear[0], nn.Conv2d)


def test_set_factors_changes_rank():
    layer = SVDLinear(4, 3, rank=2)
    n, s, c = kaiming_factors(3, 4, 5)
    layer.set_factors(n, s, c)
    assert layer.rank == 5 and layer(torch.randn(1, 4)).shape == (1, 3)
    assert isinstance(layer.N, nn.Parameter) and layer.N.requires_grad


def test_orthogonality_frozen_same_value_and_gradient():
    m = torch.randn(6, 9, requires_grad=True)
    full = orthogonality(m)
    full.backward()
    g_full = m.grad.clone()
    m.grad = None
    part = orthogonality_frozen(m, 4)
    part.backward()
    torch.testing.assert_close(part, full)
    torch.testing.assert_close(m.grad[4:], g_full[4:])
    assert torch.equal(m.grad[:4], torch.zeros(4, 9))
    # a wide Gram (d < r) falls back to the full computation
    w = torch.randn(9, 4)
    torch.testing.assert_close(orthogonality_frozen(w, 3), orthogonality(w))


def test_frozen_prefix_cache_gives_the_same_weight():
    layer = SVDLinear(7, 5, rank=6)
    full = layer.dense_weight().detach().clone()
    layer.freeze_prefix(4)
    torch.testing.assert_close(layer.dense_weight(), full)
    layer.dense_weight().sum().backward()
    assert torch.equal(layer.N.grad[:, :4], torch.zeros(5, 4)) and layer.N.grad[:, 4:].abs().sum() > 0
    layer.active_rank = 3  # answering for an old task never uses the cache
    torch.testing.assert_close(layer.dense_weight(), layer.folded_factors(3)[0] @ layer.folded_factors(3)[1])
