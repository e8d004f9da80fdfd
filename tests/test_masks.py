"""Owner-index mask maths (cl_compress.compress.masks) on tiny tensors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_compress.compress import masks


def test_owner_codes_and_views():
    owner = torch.tensor([0, 1, 2, 3, 1], dtype=torch.uint8)
    assert masks.owner_code(0) == 1 and masks.owner_code(2) == 3
    assert masks.visible_mask(owner, 1).tolist() == [False, True, True, False, True]
    assert masks.trainable_mask(owner, 1).tolist() == [False, False, True, False, False]
    assert masks.frozen_mask(owner, 1).tolist() == [False, True, False, False, True]
    assert masks.claim_free(owner, 3).tolist() == [4, 1, 2, 3, 1]
    assert masks.owned_counts(owner, 3) == [2, 1, 1]
    w = torch.arange(1.0, 6.0)
    assert masks.masked(w, owner, 0).tolist() == [0.0, 2.0, 0.0, 0.0, 5.0]
    with pytest.raises(ValueError, match="outside"):
        masks.owner_code(255)


def test_new_owner_index_is_free_uint8():
    o = masks.new_owner_index(torch.randn(3, 4))
    assert o.dtype == torch.uint8 and o.shape == (3, 4) and int(o.sum()) == 0


def test_smallest_k_breaks_ties_by_position_and_picks_exactly_k():
    scores = torch.zeros(2, 4)
    cand = torch.tensor([[True, False, True, True], [True, True, False, True]])
    chosen = masks.smallest_k(scores, cand, 3)
    assert int(chosen.sum()) == 3
    assert chosen.tolist() == [[True, False, True, True], [False, False, False, False]]
    assert not (chosen & ~cand).any()
    with pytest.raises(ValueError, match="cannot choose"):
        masks.smallest_k(scores, cand, 7)


def test_magnitude_prune_only_touches_the_tasks_own_smallest_weights():
    w = torch.tensor([[0.1, -5.0, 0.3, 0.0], [2.0, -0.2, 0.05, 4.0]])
    owner = torch.tensor([[1, 2, 2, 2], [1, 2, 2, 2]], dtype=torch.uint8)
    new, k = masks.magnitude_prune(w, owner, task=1, ratio=0.5)
    # task 1 owns 6 entries: |w| = 5, .3, 0, .2, .05, 4 -> the three smallest go
    assert k == 3
    assert new.tolist() == [[1, 2, 2, 0], [1, 0, 0, 2]]
    assert torch.equal(new[owner == 1], owner[owner == 1])  # task 0's entries are untouched


def test_magnitude_prune_exact_count_with_ties_and_empty_layer():
    w = torch.ones(10)
    owner = masks.claim_free(masks.new_owner_index(w), 0)
    new, k = masks.magnitude_prune(w, owner, 0, 0.35)
    assert k == 4 and int((new == masks.FREE).sum()) == 4
    none, k0 = masks.magnitude_prune(w, owner, task=3, ratio=0.5)
    assert k0 == 0 and torch.equal(none, owner)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), ratio=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_prune_keeps_every_survivor_at_least_as_large_as_every_pruned(n, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=g)
    owner = torch.randint(1, 3, (n,), generator=g, dtype=torch.uint8)
    new, k = masks.magnitude_prune(w, owner, 1, ratio)
    own = owner == 2
    dropped = own & (new == masks.FREE)
    assert k == masks.prune_count(int(own.sum()), ratio) == int(dropped.sum())
    kept = own & (new == 2)
    if dropped.any() and kept.any():
        assert w[dropped].abs().max() <= w[kept].abs().min()


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_unpack_round_trip_and_size(bits):
    g = torch.Generator().manual_seed(bits)
    for n in (0, 1, 7, 8, 13, 1001):
        v = torch.randint(0, 2 ** bits, (n,), generator=g).to(torch.uint8)
        packed = masks.pack_bits(v, bits)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n * bits / 8)
        assert torch.equal(masks.unpack_bits(packed, bits, n), v)


def test_pack_bits_layout_is_little_endian():
    # values 1, 2, 3 at 2 bits: 01 | 10 | 11 -> bits (lsb first) 1,0, 0,1, 1,1 -> 0b00111001
    assert masks.pack_bits(torch.tensor([1, 2, 3], dtype=torch.uint8), 2).tolist() == [0b111001]


def test_pack_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError, match="must lie in"):
        masks.pack_bits(torch.tensor([4], dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="fewer than"):
        masks.unpack_bits(torch.zeros(1, dtype=torch.uint8), 3, 3)


def test_index_bits_counts_the_free_code():
    assert [masks.index_bits(n) for n in (1, 3, 4, 5, 15, 16)] == [1, 2, 3, 3, 4, 5]
    with pytest.raises(ValueError):
        masks.index_bits(256)


def test_pack_layer_stores_used_values_only_and_round_trips():
    w = torch.tensor([[0.5, 0.0, -1.5], [2.0, 0.25, 0.0]])
    owner = torch.tensor([[1, 0, 2], [3, 1, 0]], dtype=torch.uint8)
    layer = masks.pack_layer(w, owner, bits=2)
    assert layer["values"].tolist() == [0.5, -1.5, 2.0, 0.25]
    assert layer["owner"].numel() == 2  # 6 entries x 2 bits = 12 bits -> 2 bytes
    w2, o2 = masks.unpack_layer(layer, bits=2)
    assert torch.equal(w2, w) and torch.equal(o2, owner)
