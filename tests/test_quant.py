"""Quantisers and bit packing of ``cl_compress.compress.quant`` on tiny tensors."""

import math
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_compress.compress.quant import (
    bits_for,
    dequantise_tasks,
    kmeans_1d,
    levels_from_params,
    linear_params,
    min_bits,
    owner_bitmap_bits,
    pack_bits,
    pack_owner_bitmaps,
    quantize,
    unpack_bits,
    unpack_owner_bitmaps,
)


def _gauss(n=5000, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 0.1 + 0.02


def test_bits_for():
    assert [bits_for(n) for n in (1, 2, 3, 4, 5, 6, 64, 65)] == [1, 1, 2, 2, 3, 3, 6, 7]


@pytest.mark.parametrize("method", ["linear_sym", "linear_asym"])
@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_linear_error_bound(method, bits):
    x = _gauss()
    codes, levels, params = quantize(x, bits, method)
    scale = float(params[0])
    assert codes.dtype == torch.int64 and int(codes.min()) >= 0 and int(codes.max()) < 2 ** bits
    err = (levels[codes] - x).abs().max().item()
    assert err <= scale / 2 + 1e-6
    # the grid is as fine as the bit-width allows
    span = 2 * x.abs().max().item() if method == "linear_sym" else (x.max() - x.min()).item()
    steps = 2 ** bits - 2 if method == "linear_sym" else 2 ** bits - 1
    assert scale == pytest.approx(span / steps, rel=1e-5)
    # the stored params rebuild the identical level table
    assert torch.equal(levels_from_params(params, bits, method), levels)


def test_linear_sym_keeps_zero_and_sign():
    x = torch.tensor([-1.0, -0.3, 0.0, 0.3, 1.0])
    codes, levels, _ = quantize(x, 3, "linear_sym")
    deq = levels[codes]
    assert deq[2].item() == 0.0
    assert torch.equal(deq, -deq.flip(0))
    assert deq[0].item() == -1.0 and deq[-1].item() == 1.0
    _, _, params = quantize(x, 3, "linear_sym")
    assert params.numel() == 1  # symmetric stores the scale only


def test_linear_asym_hits_extremes():
    x = torch.tensor([0.5, 0.7, 1.1, 2.0])
    codes, levels, _ = quantize(x, 4, "linear_asym")
    deq = levels[codes]
    assert deq[0].item() == pytest.approx(0.5) and deq[-1].item() == pytest.approx(2.0)


def test_linear_degenerate_inputs():
    for x in (torch.full((7,), 0.25), torch.zeros(4)):
        for method in ("linear_sym", "linear_asym"):
            codes, levels, _ = quantize(x, 2, method)
            assert torch.allclose(levels[codes], x)
    assert linear_params(torch.zeros(0), 4, symmetric=False).tolist() == [1.0, 0.0]
    assert linear_params(torch.zeros(0), 4, symmetric=True).tolist() == [1.0]
    with pytest.raises(ValueError, match="at least 2 bits"):
        quantize(_gauss(), 1, "linear_sym")
    assert min_bits("linear_sym") == 2 and min_bits("kmeans") == 1


def test_kmeans_recovers_known_clusters():
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([-2.0, 0.5, 3.0])
    x = torch.cat([c + 0.05 * torch.randn(400, generator=g) for c in centres])
    x = x[torch.randperm(x.numel(), generator=g)]
    cent, codes = kmeans_1d(x, 3)
    assert torch.allclose(cent, centres, atol=0.02)
    # every point is labelled with its own blob
    truth = torch.bucketize(x, torch.tensor([-0.75, 1.75]))
    assert torch.equal(codes, truth)


def test_kmeans_exact_when_few_distinct_values():
    x = torch.tensor([0.1, -0.4, 0.1, 0.9, -0.4, 0.9, 0.9])
    cent, codes = kmeans_1d(x, 4)
    assert torch.equal(cent[codes], x)
    assert torch.equal(cent, cent.sort().values)
    cent1, codes1 = kmeans_1d(x, 1)
    assert torch.allclose(cent1, x.mean().reshape(1)) and int(codes1.max()) == 0


def test_kmeans_codes_are_nearest_centroid_and_lloyd_optimal():
    x = _gauss(3000, seed=3)
    cent, codes = kmeans_1d(x, 8)
    dist = (x[:, None] - cent[None, :]).abs()
    assert torch.allclose(dist.gather(1, codes[:, None]).squeeze(1), dist.min(1).values)
    # at a Lloyd fixed point every centroid is the mean of its cluster
    for i in range(8):
        members = x[codes == i]
        if members.numel():
            assert cent[i].item() == pytest.approx(members.double().mean().item(), abs=1e-5)


def test_kmeans_error_falls_with_bits_and_beats_linear():
    x = _gauss(20000, seed=4)
    mse = {}
    for bits in (1, 2, 3, 4, 6):
        codes, levels, _ = quantize(x, bits, "kmeans")
        mse[bits] = ((levels[codes] - x) ** 2).mean().item()
        if bits >= 2:
            lc, ll, _ = quantize(x, bits, "linear_asym")
            assert mse[bits] < ((ll[lc] - x) ** 2).mean().item()
    assert all(mse[a] > mse[b] for a, b in ((1, 2), (2, 3), (3, 4), (4, 6)))


def test_kmeans_matches_sklearn_inertia():
    from sklearn.cluster import KMeans

    x = _gauss(4000, seed=5)
    cent, codes = kmeans_1d(x, 16)
    ours = ((cent[codes] - x) ** 2).sum().item()
    km = KMeans(16, n_init=3, random_state=0).fit(x.numpy().reshape(-1, 1))
    assert ours <= km.inertia_ * 1.02


def test_kmeans_million_weights_is_fast():
    x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(6)) * 0.05
    t0 = time.perf_counter()
    cent, codes = kmeans_1d(x, 64)
    assert time.perf_counter() - t0 < 10.0
    assert codes.shape == x.shape and cent.numel() == 64
    assert ((cent[codes] - x) ** 2).mean().item() < 1e-5


def test_kmeans_empty_and_bad_k():
    cent, codes = kmeans_1d(torch.zeros(0), 4)
    assert cent.numel() == 4 and codes.numel() == 0
    with pytest.raises(ValueError):
        kmeans_1d(_gauss(), 0)
    with pytest.raises(ValueError, match="unknown quantisation method"):
        quantize(_gauss(), 4, "log")


@pytest.mark.parametrize("bits", list(range(1, 17)))
def test_pack_round_trip_every_width(bits):
    n = 1000 + bits  # not a multiple of 8 in general
    codes = torch.randint(0, 2 ** bits, (n,), generator=torch.Generator().manual_seed(bits))
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n * bits / 8)
    assert torch.equal(unpack_bits(packed, bits, n), codes)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12).flatmap(
    lambda b: st.tuples(st.just(b), st.lists(st.integers(0, 2 ** b - 1), max_size=50))))
def test_pack_round_trip_property(case):
    bits, values = case
    codes = torch.tensor(values, dtype=torch.int64)
    assert torch.equal(unpack_bits(pack_bits(codes, bits), bits, len(values)), codes)


def test_pack_rejects_bad_codes():
    with pytest.raises(ValueError, match="must lie in"):
        pack_bits(torch.tensor([0, 4]), 2)
    with pytest.raises(ValueError, match="must lie in"):
        pack_bits(torch.tensor([-1]), 3)
    with pytest.raises(ValueError, match="fewer than"):
        unpack_bits(torch.zeros(1, dtype=torch.uint8), 3, 3)


def test_pack_known_layout():
    # little-endian: codes 1, 2, 3 at 2 bits -> bits 10 01 11 -> byte 0b00111001
    assert pack_bits(torch.tensor([1, 2, 3]), 2).tolist() == [0b00111001]


def test_owner_bitmaps_round_trip_and_size():
    g = torch.Generator().manual_seed(7)
    owner = torch.randint(0, 5, (13, 29), generator=g).to(torch.uint8)  # 4 tasks + free
    maps = pack_owner_bitmaps(owner, 4)
    assert len(maps) == 4
    assert torch.equal(unpack_owner_bitmaps(maps, owner.shape), owner)
    # task t's map spans the entries no earlier task owns
    n = owner.numel()
    spans = [n - int(((owner >= 1) & (owner <= t)).sum()) for t in range(4)]
    assert owner_bitmap_bits(owner, 4) == sum(spans)
    assert [m.numel() for m in maps] == [math.ceil(s / 8) for s in spans]


def test_owner_bitmaps_beat_fixed_width_when_tasks_prune():
    # each task keeps half of what is left: 1/2, 1/4, 1/8 ... of the entries
    n, owner, start = 1024, torch.zeros(1024, dtype=torch.uint8), 0
    for t in range(5):
        size = (n - start) // 2
        owner[start:start + size] = t + 1
        start += size
    assert owner_bitmap_bits(owner, 5) < 3 * n  # 3 bits: fixed-width index for 5 tasks
    assert torch.equal(unpack_owner_bitmaps(pack_owner_bitmaps(owner, 5), (n,)), owner)


def test_dequantise_tasks_places_each_tasks_codes():
    owner = torch.tensor([[1, 0, 2], [2, 1, 0]], dtype=torch.uint8)
    w = torch.tensor([[0.5, 0.0, -1.0], [1.0, -0.5, 0.0]])
    records = {}
    for t in range(2):
        codes, levels, params = quantize(w[owner == t + 1], 1, "kmeans")
        records[t] = {"bits": 1, "method": "kmeans",
                      "layers": {"l": {"codes": pack_bits(codes, 1), "n": codes.numel(),
                                       "params": params}}}
    assert torch.equal(dequantise_tasks({"l": owner}, records, 1)["l"], w)
    only0 = dequantise_tasks({"l": owner}, records, 0)["l"]
    assert torch.equal(only0, torch.where(owner == 1, w, 0.0))
