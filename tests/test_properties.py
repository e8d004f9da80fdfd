"""Property-based tests (hypothesis) of the compression maths."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_compress.compress import lowrank, masks, quant

SETTINGS = settings(max_examples=60, deadline=None)


def _tensor(seed: int, shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@SETTINGS
@given(seed=st.integers(0, 10_000), n_tasks=st.integers(1, 6),
       ratios=st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6),
       rows=st.integers(1, 12), cols=st.integers(1, 12))
def test_packnet_masks_never_overlap_and_pruning_never_touches_frozen(seed, n_tasks, ratios, rows, cols):
    owner = masks.new_owner_index(torch.empty(rows, cols))
    history = []
    for t in range(n_tasks):
        before = owner.clone()
        owner = masks.claim_free(owner, t)
        w = _tensor(seed + t, (rows, cols))
        n_own = int(masks.trainable_mask(owner, t).sum())
        owner, k = masks.magnitude_prune(w, owner, t, ratios[t])
        assert k == masks.prune_count(n_own, ratios[t])
        assert int(masks.trainable_mask(owner, t).sum()) == n_own - k
        # entries of earlier tasks keep their owner: pruning never touches frozen weights
        frozen = masks.frozen_mask(before, t)
        assert torch.equal(owner[frozen], before[frozen])
        # training masks of the current task and frozen masks are disjoint
        assert not (masks.trainable_mask(owner, t) & masks.frozen_mask(owner, t)).any()
        history.append(owner.clone())
    # each entry has at most one owner and the visible sets are nested
    for j in range(n_tasks - 1):
        assert (masks.visible_mask(owner, j) <= masks.visible_mask(owner, j + 1)).all()
    owned = masks.owned_counts(owner, n_tasks)
    assert sum(owned) + int((owner == masks.FREE).sum()) == rows * cols


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 300), bits=st.integers(1, 8))
def test_owner_index_packing_round_trips(seed, n, bits):
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 2 ** bits, (n,), generator=g, dtype=torch.int64).to(torch.uint8)
    packed = masks.pack_bits(values, bits)
    assert packed.numel() == -(-n * bits // 8)
    assert torch.equal(masks.unpack_bits(packed, bits, n), values)


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(2, 500), bits=st.integers(2, 8),
       method=st.sampled_from(quant.LINEAR_METHODS), scale=st.floats(1e-3, 1e3))
def test_linear_quantisation_error_within_half_a_step(seed, n, bits, method, scale):
    x = _tensor(seed, (n,)) * scale
    codes, levels, params = quant.quantize(x, bits, method)
    err = (levels[codes] - x).abs().max()
    step = params[0]
    assert codes.min() >= 0 and codes.max() < 2 ** bits
    assert err <= step / 2 * (1 + 1e-4) + 1e-6 * scale


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 400), bits=st.integers(1, 6))
def test_kmeans_dequantisation_error_bounded_by_cell_width(seed, n, bits):
    x = _tensor(seed, (n,))
    codes, levels, _ = quant.quantize(x, bits, "kmeans")
    err = (levels[codes] - x).abs()
    # every value is mapped to its nearest centroid, so no centroid is closer
    nearest = (x[:, None] - levels[None, :]).abs().min(dim=1).values
    assert torch.allclose(err, nearest, atol=1e-6)
    assert err.max() <= (x.max() - x.min()) + 1e-6


@SETTINGS
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 20), cols=st.integers(1, 20),
       k=st.integers(0, 20), transfer=st.booleans(), true_rank=st.integers(1, 20))
def test_projection_never_increases_rank(seed, rows, cols, k, transfer, true_rank):
    r = min(true_rank, rows, cols)
    w = _tensor(seed, (rows, r)) @ _tensor(seed + 1, (r, cols))
    before = lowrank.numerical_rank(w)
    p = lowrank.project(w, k, transfer=transfer)
    after = lowrank.numerical_rank(p)
    assert after <= before and after <= max(k, 0)
    if transfer and k > 0 and before > 0:  # energy transfer preserves the Frobenius norm
        assert torch.allclose(p.double().norm(), w.double().norm(), rtol=1e-4)
