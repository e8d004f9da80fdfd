"""CACL strategy: zero forgetting, rank bookkeeping, accounting, resume, validation."""

import csv

import pytest
import torch

from cl_compress.compress.svd import SVDConv2d, SVDLinear
from cl_compress.errors import ConfigError
from cl_compress.rundir.io import load_torch
from cl_compress.strategies import TrainSettings, get_strategy
from cl_compress.testing import old_task_outputs, run_quick

SMALL = ["strategy=cacl", "model.hidden=[32,32]"]
SHARED = SMALL + ["strategy.energy_sv=0.05", "strategy.growth=none", "strategy.sigma_lr_scale=5"]


def test_zero_forgetting_conv_with_batchnorm(run_dir):
    """Per-task BatchNorm statistics, and weight decay (which would move the frozen components
    unless they are written back after each step): the contract matrix runs an MLP without
    either."""
    extra = ["model=cnn", "model.channels=[8,16]", "model.batch_norm=true",
             "strategy.factorize=[conv]", "train.weight_decay=0.01"]
    outs = old_task_outputs(["strategy=cacl"], run_dir, extra=extra)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One run shared by several tests: component snapshots and a probe after every task."""
    run_dir = tmp_path_factory.mktemp("cacl") / "run"
    snaps, probe = [], {}

    def hook(t, model, strategy):
        snaps.append([(m.N.detach().clone(), m.sigma.detach().clone(), m.C.detach().clone(), r)
                      for m, r in zip(strategy.layers, strategy.task_ranks[t])])
        x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(t))
        model.eval()
        with torch.no_grad(), strategy.task_context(0):
            probe[t] = (x, model(x, 0))
        model.train()

    res = run_quick(run_dir, SHARED, on_task_end=hook)
    return res, run_dir, snaps, probe


def test_frozen_components_ranks_and_logging(shared):
    res, run_dir, snaps, _ = shared
    ranks = res["strategy_extra"]["ranks"]
    assert set(ranks) == {"layer0", "layer1"}
    init = res["strategy_extra"]["initial_ranks"]
    for name, rs in ranks.items():
        assert len(rs) == 3 and rs == sorted(rs) and 0 < rs[0]
        assert rs[-1] <= init[name]  # growth=none never exceeds the initial rank
    assert res["compression"]["cacl_ranks"] == {k: v[-1] for k, v in ranks.items()}
    # the components owned by task t are bit-identical after every later task
    for t in range(2):
        for (n, s, c, r), (n2, s2, c2, _) in zip(snaps[t], snaps[2]):
            assert torch.equal(n[:, :r], n2[:, :r]) and torch.equal(s[:r], s2[:r])
            assert torch.equal(c[:r], c2[:r])
    # per-layer rank of each task logged under compress/rank/<layer path in the model>
    path = res["strategy_extra"]["layers"]["layer0"]
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["key"] == f"compress/rank/body.{path}"]
    assert [int(float(r["value"])) for r in rows] == ranks["layer0"]


def test_accounting_matches_artifact(shared):
    res, run_dir, _, probe = shared
    art = load_torch(run_dir / "model_artifact.pt")
    n = sum(f["left"].numel() + f["right"].numel() for f in art["factors"].values())
    n += sum(v.numel() for v in art["dense"].values())
    n += sum(v.numel() for h in art["heads"] for v in h.values())
    n += art["task_ranks"].numel()
    assert res["compression"]["stored_params"] == n
    ranks = res["strategy_extra"]["ranks"]
    fan = {"layer0": 64 + 32, "layer1": 32 + 32}  # synthetic 8x8 inputs, hidden 32-32
    assert sum(f["left"].numel() + f["right"].numel() for f in art["factors"].values()) == \
        sum(ranks[k][-1] * fan[k] for k in fan)
    assert art["task_ranks"].tolist() == [list(r) for r in zip(*ranks.values())]
    # the artifact alone answers for task 0 as the model did: first r_0 components, head 0
    x, want = probe[2]
    h = x.flatten(1)
    for name, layer in art["factors"].items():
        r = art["task_ranks"][0][int(name[-1])]
        w = layer["left"][:, :r] @ layer["right"][:r]
        h = torch.relu(h @ w.t() + art["dense"][f"{layer['path']}.bias"])
    out = h @ art["heads"][0]["weight"].t() + art["heads"][0]["bias"]
    torch.testing.assert_close(out, want)


GROWTH = SMALL + ["strategy.energy_sv=0.05", "strategy.sigma_lr_scale=5"]


def _ranks_and_slots(run_dir, overrides):
    """Cumulative rank per task and the layer's component count (slots) after each task."""
    slots = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # pinned figures: one thread, fixed seed
    try:
        res = run_quick(run_dir, overrides,
                        on_task_end=lambda t, model, s: slots.append([m.rank for m in s.layers]))
    finally:
        torch.set_num_threads(threads)
    extra = res["strategy_extra"]
    return extra["ranks"], list(zip(*slots)), extra["initial_ranks"]


def test_growth_authors_average_is_pinned(tmp_path):
    """The authors' rule (SVDNet.arrange_model + get_avg): task 0 only refills its truncated
    slots (the layer keeps its initial size); after task t > 0 the fresh slots are at least
    int(mean of the cumulative ranks of tasks < t), capped at the initial rank, and the
    truncated slots are always refilled. ``full`` adds the initial rank after every task."""
    ranks, slots, base = _ranks_and_slots(tmp_path / "a", GROWTH + ["strategy.growth=authors_average"])
    # one seed, one thread, synthetic stream: the sequence this rule gives (not a target)
    assert ranks == {"layer0": [13, 20, 26], "layer1": [12, 15, 21]}
    assert dict(zip(ranks, map(list, slots))) == {"layer0": [21, 33, 42], "layer1": [16, 27, 34]}
    for (name, r), s in zip(ranks.items(), slots):
        assert s[0] == base[name]  # no growth at task 0
        for t in (1, 2):
            target = int(min(sum(r[:t]) / t, base[name]))
            refill = s[t - 1] - r[t]
            assert s[t] == r[t] + max(refill, target)
    full_ranks, full_slots, _ = _ranks_and_slots(tmp_path / "b", GROWTH + ["strategy.growth=full"])
    for (name, r), s in zip(full_ranks.items(), full_slots):
        assert list(s) == [r[t] + base[name] for t in range(3)]
        assert s[0] > base[name]  # full grows at task 0 already
    assert full_slots != slots
    # authors_full (their get_avg off CIFAR-100/miniImageNet): task 0 as above, later tasks
    # at least the initial rank of fresh slots
    af_ranks, af_slots, _ = _ranks_and_slots(tmp_path / "c", GROWTH + ["strategy.growth=authors_full"])
    # the default, auto, follows the authors' branch for the stream: authors_full here
    auto_ranks, auto_slots, _ = _ranks_and_slots(tmp_path / "d", GROWTH)
    assert (auto_ranks, auto_slots) == (af_ranks, af_slots)
    for (name, r), s in zip(af_ranks.items(), af_slots):
        assert s[0] == base[name]
        assert all(s[t] == r[t] + max(s[t - 1] - r[t], base[name]) for t in (1, 2))


def test_surgery_and_validation():
    cls = get_strategy("cacl")
    with pytest.raises(ConfigError, match=r"strategy.energy_sv=1.5 is out of range; valid range is"):
        cls.from_config({"energy_sv": 1.5}, TrainSettings())
    with pytest.raises(ConfigError, match="sparse_type"):
        cls.from_config({"sparse_type": "l2"}, TrainSettings())
    with pytest.raises(ConfigError, match="factorize"):
        cls.from_config({"factorize": []}, TrainSettings())
    with pytest.raises(ConfigError, match=r"factorize\[0\]"):
        cls.from_config({"factorize": ["attention"]}, TrainSettings())
    assert cls.scenarios == ("task", "class") and cls.infers_task  # class: task inferred


def test_factorises_the_requested_layer_types(tmp_path):
    with pytest.raises(ConfigError, match="matches no layer"):
        run_quick(tmp_path / "a", SMALL + ["strategy.factorize=[conv]"])
    seen = {}

    def kinds(t, model, strategy):
        seen["kinds"] = {type(m) for m in model.body.modules()}

    run_quick(tmp_path / "b", ["strategy=cacl", "model=cnn", "model.channels=[8,8]", "train.epochs=1",
                               "strategy.factorize=[conv]"], on_task_end=kinds)
    assert SVDConv2d in seen["kinds"] and SVDLinear not in seen["kinds"]


def test_resume_with_growth_none_and_own_sigma_lr(shared, tmp_path):
    """The contract resumes the defaults; this resumes growth=none with sigma in its own
    parameter group (sigma_lr_scale=5) after a kill at task 1: same matrix, same ranks."""
    want = shared[0]

    def kill(t, model, strategy):
        if t == 1:
            raise KeyboardInterrupt

    run = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        run_quick(run, SHARED, on_task_end=kill)
    got = run_quick(run, SHARED + ["resume=true"])
    assert got["acc_matrix"] == want["acc_matrix"]
    assert got["strategy_extra"]["ranks"] == want["strategy_extra"]["ranks"]
    assert got["compression"]["stored_bits"] == want["compression"]["stored_bits"]


def test_auto_growth_picks_the_authors_branch_by_stream():
    """agents/SVDNet.py:411-414: get_avg on CIFAR-100 and miniImageNet, the initial rank on
    every other stream; the branch a run followed is in results.json strategy_extra.growth."""
    from cl_compress.strategies.cacl import authors_growth
    assert get_strategy("cacl").Config().growth == "auto"
    assert [authors_growth(n) for n in ("split_cifar100", "miniImageNet", "mini-imagenet")] == \
        ["authors_average"] * 3
    assert [authors_growth(n) for n in ("split_fmnist", "permuted_fmnist", "five_datasets", "")] == \
        ["authors_full"] * 4
