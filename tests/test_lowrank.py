"""Unit tests of the LRPET maths (cl_compress.compress.lowrank) on tiny tensors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_compress.compress import lowrank


def _w(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _energy(w: torch.Tensor) -> float:
    return float(w.double().square().sum())


@settings(max_examples=30, deadline=None)
@given(out=st.integers(2, 9), fan=st.integers(2, 9), k=st.integers(1, 9),
       rho=st.sampled_from([0.0, 0.3, 0.9]), seed=st.integers(0, 10_000))
def test_energy_preserved_exactly_after_transfer(out, fan, k, rho, seed):
    w = _w(out, fan, seed=seed)
    p = lowrank.project(w, k, transfer=True, rho=rho)
    assert p.shape == w.shape
    assert _energy(p) == pytest.approx(_energy(w), rel=1e-12)


def test_energy_transfer_on_singular_values():
    s = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    hard = lowrank.energy_transfer(s, 2)
    alpha = (16 + 9 + 4 + 1) / (16 + 9)
    assert torch.allclose(hard, torch.tensor([4.0, 3.0, 0, 0], dtype=torch.float64) * torch.tensor(
        [alpha ** 0.5, alpha ** 0.5, 1, 1], dtype=torch.float64))
    assert float(hard.square().sum()) == pytest.approx(30.0)
    # rho variant: the tail keeps rho * s, the head gets only the energy actually removed
    soft = lowrank.energy_transfer(s, 2, rho=0.5)
    assert torch.allclose(soft[2:], 0.5 * s[2:])
    assert float(soft.square().sum()) == pytest.approx(30.0)
    assert (soft[:2] < hard[:2]).all() and (soft[:2] > s[:2]).all()
    # the order of singular values is kept (uniform multiplicative scale of the head)
    assert torch.allclose(soft[0] / soft[1], s[0] / s[1])


def test_energy_transfer_zero_head_is_left_alone():
    s = torch.zeros(3, dtype=torch.float64)
    assert torch.equal(lowrank.energy_transfer(s, 1), s)


@pytest.mark.parametrize("shape", [(6, 5), (8, 3, 3, 3), (4, 10)])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_rank_at_most_k_after_projection(shape, k):
    w = _w(*shape)
    for transfer in (True, False):
        p = lowrank.project(w, k, transfer=transfer)
        assert lowrank.numerical_rank(p) <= k
    assert lowrank.numerical_rank(w) > k  # the input was full rank


def test_projection_without_transfer_is_eckart_young_truncation():
    w = _w(7, 5)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    best = (u[:, :2] * s[:2]) @ vh[:2]
    assert torch.allclose(lowrank.truncate(w, 2), best)
    # energy transfer only rescales: same direction, sqrt(alpha) larger
    scaled = lowrank.project(w, 2)
    alpha = float(s.square().sum() / s[:2].square().sum())
    assert torch.allclose(scaled, best * alpha ** 0.5)


def test_projection_is_idempotent_on_rank_k_weights():
    w = lowrank.truncate(_w(6, 6), 3)
    assert torch.allclose(lowrank.project(w, 3), w, atol=1e-12)


def test_rho_variant_keeps_full_rank_but_shrinks_tail():
    w = _w(6, 6)
    p = lowrank.project(w, 2, rho=0.5)
    s_w = torch.linalg.svdvals(w)
    s_p = torch.linalg.svdvals(p)
    assert lowrank.numerical_rank(p) == 6
    assert torch.allclose(s_p[2:], 0.5 * s_w[2:])


def test_bn_rectification_projects_in_scaled_space():
    w = _w(5, 2, 3, 3)
    a = torch.tensor([0.5, 1.0, 2.0, 4.0, 0.25], dtype=torch.float64)
    p = lowrank.project(w, 2, row_scale=a)
    assert lowrank.numerical_rank(p) <= 2
    # in the rectified space diag(a) W the energy is preserved (up to the regulariser:
    # a / (a^2 + 1e-5) differs from 1/a by a relative 1e-5 / a^2 = 1.6e-4 for a = 0.25)
    rect = lambda m: a[:, None] * lowrank.as_matrix(m)  # noqa: E731
    assert _energy(rect(p)) == pytest.approx(_energy(rect(w)), rel=1e-3)
    # and the rectified projection equals the plain projection of the rectified weight
    assert torch.allclose(rect(p), lowrank.as_matrix(lowrank.project(rect(w), 2)), rtol=1e-3)
    # it differs from projecting the raw weight (rows are weighted by their BN scale)
    assert not torch.allclose(p, lowrank.project(w, 2), atol=1e-3)


def test_bn_row_scale():
    bn = nn.BatchNorm2d(3, eps=1e-5)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    a = lowrank.bn_row_scale(bn)
    want = torch.tensor([1.0, 2.0, -1.0]) / torch.sqrt(torch.tensor([4.0, 1.0, 0.25]) + 1e-5)
    assert torch.allclose(a, want)
    assert torch.allclose(lowrank.bn_row_scale(nn.BatchNorm2d(3, affine=False)),
                          torch.full((3,), (1 + 1e-5) ** -0.5))


@pytest.mark.parametrize("shape", [(6, 9), (4, 2, 3, 3)])
def test_factorisation_reproduces_projected_weight(shape):
    w = lowrank.project(_w(*shape).float(), 2)
    u, v = lowrank.factorize(w, 2)
    out, fan = shape[0], w[0].numel()
    assert u.shape == (out, 2) and v.shape == (2, fan) and u.dtype == torch.float32
    assert torch.allclose(lowrank.reconstruct(u, v, shape), w, atol=1e-5)
    # sqrt(sigma) is split evenly: both factors carry the same singular values
    assert torch.allclose(torch.linalg.svdvals(u), torch.linalg.svdvals(v), atol=1e-5)
    assert lowrank.factor_params(shape, 2) == u.numel() + v.numel()


def test_factorised_conv_is_k_channel_conv_then_1x1():
    w = lowrank.project(_w(4, 3, 3, 3).float(), 2)
    u, v = lowrank.factorize(w, 2)
    x = torch.randn(2, 3, 6, 6)
    dense = nn.functional.conv2d(x, w, padding=1)
    thin = nn.functional.conv2d(nn.functional.conv2d(x, v.reshape(2, 3, 3, 3), padding=1),
                                u.reshape(4, 2, 1, 1))
    assert torch.allclose(dense, thin, atol=1e-5)


def test_choose_rank():
    assert lowrank.full_rank((64, 3, 3, 3)) == 27
    assert lowrank.choose_rank((256, 784), ratio=0.125) == 32
    assert lowrank.choose_rank((256, 784), rank=500) == 256
    assert lowrank.choose_rank((10, 10), ratio=0.01) == 1
    assert lowrank.choose_rank((10, 10), ratio=1.0) == 10
    assert lowrank.choose_rank((10, 10), ratio=0.3) == 3  # float rounding does not drop a rank


def test_project_does_not_modify_input_and_keeps_dtype():
    w = _w(5, 4).float()
    before = w.clone()
    p = lowrank.project(w, 1)
    assert torch.equal(w, before) and p.dtype == torch.float32
