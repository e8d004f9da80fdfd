"""PackNet: zero forgetting by construction, exact freezing, masks, accounting, resume."""

import math
import subprocess
import sys
import time

import pytest
import torch

from cl_compress.benchmarks import BenchmarkSpec, build_stream
from cl_compress.compress import masks
from cl_compress.errors import ConfigError
from cl_compress.rundir.io import load_torch
from cl_compress.strategies.packnet import decode_artifact
from cl_compress.testing import QUICK, compose_config, old_task_outputs, run_quick
from cl_compress.train import build_and_run

CNN_BN = ["model=cnn", "model.batch_norm=true", "model.channels=[8,16]"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One run (Adam with weight decay, which moves frozen weights unless they are restored)
    with a snapshot of weights, owners and task 0's masked view after every task."""
    run_dir = tmp_path_factory.mktemp("packnet") / "run"
    snaps = []
    x0 = build_stream(BenchmarkSpec("synthetic")).experiences[0].test_x

    def snap(t, model, strategy):
        with strategy.task_context(0):
            masked = {n: m.weight.detach().clone() for n, m in strategy.layers.items()}
        model.eval()
        with torch.no_grad(), strategy.task_context(0):
            logits0 = model(x0, 0).clone()
        model.train()
        snaps.append({"masked0": masked, "logits0": logits0,
                      "w": {n: m.weight.detach().clone() for n, m in strategy.layers.items()},
                      "owners": {n: o.clone() for n, o in strategy.owners.items()},
                      "stats": strategy.compression_stats()})

    res = run_quick(run_dir, ["strategy=packnet", "train.weight_decay=0.01"], on_task_end=snap)
    return res, snaps, run_dir


def test_owned_weights_frozen_pruned_zero_and_counts_exact(reference):
    _, snaps, _ = reference
    for t, s in enumerate(snaps):
        for n, owner in s["owners"].items():
            w = s["w"][n]
            assert torch.all(w[owner == masks.FREE] == 0)
            for j in range(t):  # everything an earlier task owns is bit-identical
                frozen = snaps[j]["owners"][n] == masks.owner_code(j)
                assert torch.equal(owner[frozen], snaps[j]["owners"][n][frozen])
                assert torch.equal(w[frozen], snaps[j]["w"][n][frozen])
            assert not (s["masked0"][n][owner > masks.owner_code(0)]).any()  # task-0 view
    # prune 0.5 of what each task owns (last task not pruned): 1/2, 1/4, 1/4 of each layer
    for owner in snaps[-1]["owners"].values():
        assert masks.owned_counts(owner, 3) == [owner.numel() // 2, owner.numel() // 4,
                                                owner.numel() // 4]


def test_task0_outputs_and_rows_unchanged_under_adam_weight_decay(reference):
    """Adam with weight decay (the contract matrix trains without it): task 0's logits are
    bit-identical after every later task, and every earlier accuracy stays as learned."""
    res, snaps, _ = reference
    assert all(torch.equal(s["logits0"], snaps[0]["logits0"]) for s in snaps)
    R = res["acc_matrix"]
    assert all(R[i][j] == R[j][j] for i in range(len(R)) for j in range(i + 1))


def test_context_restores_weights(reference):
    """``w`` was read after task_context(0) exited: the entries it masked are back."""
    _, snaps, _ = reference
    last = snaps[-1]
    for n, owner in last["owners"].items():
        assert (last["w"][n][owner == masks.owner_code(2)] != 0).any()


def test_accounting_and_artifact_decode(reference):
    res, snaps, run_dir = reference
    comp, stats = res["compression"], snaps[-1]["stats"]
    art = load_torch(run_dir / "model_artifact.pt")
    dec = decode_artifact(art)
    bits = masks.index_bits(3)
    assert comp["index_bits"] == bits == art["index_bits"] == 2
    n_stored = 0
    for n, (w, owner) in dec.items():
        assert torch.equal(owner, snaps[-1]["owners"][n])
        assert torch.equal(w, snaps[-1]["w"][n])
        assert art["layers"][n]["owner"].numel() == math.ceil(owner.numel() * bits / 8)
        n_stored += int((owner != masks.FREE).sum())
    heads = sum(v.numel() for h in art["heads"] for v in h.values())
    biases = sum(v.numel() for st in art["biases"].values() for v in st.values())
    assert comp["stored_params"] == stats.stored_params == n_stored + heads + biases
    entries = sum(o.numel() for o in snaps[-1]["owners"].values())
    assert comp["stored_bits"] == 32 * (n_stored + heads + biases) + bits * entries
    assert comp["ratio_vs_individual"] > 2.5  # 3 tasks share one body


def test_zero_forgetting_with_per_task_biases_and_sgd_momentum(tmp_path):
    extra = ["strategy.train_biases=true", "train.optimizer=sgd", "train.weight_decay=0.05"]
    outs = old_task_outputs(["strategy=packnet"], tmp_path / "run", extra=extra)
    assert len(outs) == 3
    assert all(torch.equal(o, outs[0]) for o in outs[1:])


def _start_of_training(monkeypatch):
    """Patch PackNet so the weights, owners and biases at the start of every task's training
    phase (after claiming, before the first step) are recorded."""
    from cl_compress.strategies.packnet import PackNet

    seen = {}
    original = PackNet.before_phase

    def record(self, task, phase, data):
        original(self, task, phase, data)
        if phase.name == "train":
            seen[task] = ({n: m.weight.detach().clone() for n, m in self.layers.items()},
                          {n: o.clone() for n, o in self.owners.items()},
                          {n: b.detach().clone() for n, b in self._biases().items()})
    monkeypatch.setattr(PackNet, "before_phase", record)
    return seen


@pytest.mark.parametrize("reinit", [False, True])
def test_reinit_free_and_per_task_biases(reinit, monkeypatch, tmp_path):
    """reinit_free=false (authors): a task's claimed weights start at 0, where pruning left
    them; true: drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Either way the weights of
    earlier tasks are untouched. The same runs check train_biases (false: task 0's biases,
    shared; true: one trained set per task, each task answered with its own)."""
    seen = _start_of_training(monkeypatch)
    ends = []

    def grab(t, model, strategy):
        ends.append(({n: m.weight.detach().clone() for n, m in strategy.layers.items()},
                     {t: dict(v) for t, v in strategy.bias_states.items()}))

    over = ["strategy=packnet", f"strategy.reinit_free={str(reinit).lower()}",
            f"strategy.train_biases={str(reinit).lower()}"]
    res = run_quick(tmp_path / "run", over, on_task_end=grab)
    assert res["forgetting"] == 0.0 and res["plasticity"] > 0.8
    for t in (1, 2):
        weights, owners, _ = seen[t]
        for n, w in weights.items():
            claimed = owners[n] == masks.owner_code(t)
            older = (owners[n] != masks.FREE) & ~claimed
            assert claimed.any() and older.any()
            assert torch.equal(w[older], ends[t - 1][0][n][older])  # earlier tasks untouched
            if reinit:
                bound = 1 / math.sqrt(w[0].numel())
                assert (w[claimed] != 0).all() and (w[claimed].abs() <= bound).all()
                assert w[claimed].std() > 0.4 * bound  # uniform: std = bound / sqrt(3)
            else:
                assert (w[claimed] == 0).all()
    biases = ends[-1][1]
    if reinit:  # train_biases=true: three different stored sets
        assert sorted(biases) == [0, 1, 2]
        for k in biases[0]:
            assert not torch.equal(biases[0][k], biases[2][k])
    else:  # shared: stored once; the live biases never move after task 0
        assert sorted(biases) == [0]
        for t in (1, 2):
            assert all(torch.equal(seen[t][2][k], biases[0][k]) for k in biases[0])


@pytest.mark.parametrize("override,fractions", [
    ("strategy.prune_share=equal", [2 / 3, 1 / 2, 0.0]),
    ("strategy.prune_schedule=[0.25,0.5,0]", [0.25, 0.5, 0.0]),
])
def test_prune_share_and_schedule(override, fractions, tmp_path):
    """equal: p_t = 1 - 1/(T - t), every task ends up owning 1/T of each layer; a schedule
    prunes task t's own weights by its t-th entry (0: no pruning, no retrain phase)."""
    res = run_quick(tmp_path / "run", ["strategy=packnet", override])
    assert res["strategy_extra"]["prune_fraction"] == pytest.approx(fractions)
    assert list(res["budget"]["per_task"][2]["phases"]) == ["train"]
    for n, counts in res["strategy_extra"]["owned"].items():
        total = sum(counts) + res["strategy_extra"]["free"][n]
        left, expect = total, []
        for p in fractions:
            keep = left - masks.prune_count(left, p)
            expect.append(keep)
            left -= keep
        assert counts == expect
        if "equal" in override:
            assert max(counts) - min(counts) <= 1  # 1/3 each, up to rounding
        assert res["strategy_extra"]["free"][n] == 0  # the last task keeps everything left


@pytest.mark.parametrize("policy", ["per_task", "frozen"])
def test_batchnorm_policies(policy, tmp_path):
    x0 = build_stream(BenchmarkSpec("synthetic")).experiences[0].test_x
    seen, outs = [], []

    def grab(t, model, strategy):
        live = strategy.task_norm_state()
        seen.append((dict(strategy.norm_states), live))
        model.eval()
        with torch.no_grad(), strategy.task_context(0):
            outs.append(model(x0, 0).clone())
        model.train()

    over = ["strategy=packnet", f"strategy.norm_policy={policy}", "train.lr=0.01", "train.epochs=4"]
    if policy == "frozen":  # decoupled weight decay must not move frozen weights either
        over += ["train.optimizer=adamw", "train.weight_decay=0.1"]
    res = run_quick(tmp_path / "run", over + CNN_BN, on_task_end=grab)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])
    states = seen[-1][0]
    assert res["forgetting"] == 0.0 and res["plasticity"] > 0.8
    means = {t: [v for k, v in st.items() if k.endswith("running_mean")][0] for t, st in states.items()}
    n_bn = sum(v.numel() for v in states[0].values() if v.is_floating_point())
    if policy == "per_task":  # each task trained and stored its own statistics
        assert sorted(states) == [0, 1, 2] and not torch.equal(means[0], means[2])
        assert res["compression"]["stored_params"] >= 3 * n_bn
    else:  # trained on task 0 only: statistics and affine parameters never move again
        assert sorted(states) == [0]
        for _, live_t in seen:
            assert all(torch.equal(live_t[k], v) for k, v in states[0].items())


@pytest.mark.parametrize("override,needle", [
    ("strategy.prune_ratio=1.5", "strategy.prune_ratio=1.5 is out of range; valid range is (0.0, 1.0)"),
    ("strategy.prune_ratio=0", "strategy.prune_ratio=0 is out of range; valid range is (0.0, 1.0)"),
    ("strategy.retrain_lr_scale=2", "strategy.retrain_lr_scale=2 is out of range"),
    ("strategy.prune_schedule=[0.5,1.0,0]", "strategy.prune_schedule[1]=1.0 is out of range"),
    ("strategy.norm_policy=shared", "strategy.norm_policy='shared' is invalid"),
    ("strategy.retrain_epochs=-1", "strategy.retrain_epochs=-1 is out of range"),
    ("strategy.prune_schedule=[0.5,0.5]", "prune_schedule has 2 entries; the stream has 3 tasks"),
])
def test_bad_config_fails_before_training(override, needle, tmp_path):
    cfg = compose_config(QUICK + ["strategy=packnet", override])
    with pytest.raises(ConfigError) as e:
        build_and_run(cfg, tmp_path / "run")
    assert needle in str(e.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


DDP_SCRIPT = """
import os, sys, torch
from cl_compress.testing import compose_config
from cl_compress.train import build_and_run
out = sys.argv[1]
cfg = compose_config(["strategy=packnet", "benchmark=synthetic", "logger=none", "trainer=ddp",
                      "trainer.accelerator=cpu", "trainer.devices=2", "trainer.progress_bar=false",
                      "train.batch_size=16", "train.weight_decay=0.01"])
def snap(t, model, strategy):
    rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.save({n: o.clone() for n, o in strategy.owners.items()}, f"{out}/owners_r{rank}_t{t}.pt")
build_and_run(cfg, f"{out}/run", snap)
"""


@pytest.mark.slow
def test_ddp_ranks_reach_identical_masks(tmp_path):
    """Two CPU DDP processes: after every task both ranks hold the same owner indices."""
    script = tmp_path / "ddp_packnet.py"
    script.write_text(DDP_SCRIPT)
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=600,
                   capture_output=True)
    deadline = time.monotonic() + 60  # rank 1 is Lightning's child: it may finish a bit later
    while not (tmp_path / "owners_r1_t2.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    for t in range(3):
        a = torch.load(tmp_path / f"owners_r0_t{t}.pt")
        b = torch.load(tmp_path / f"owners_r1_t{t}.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    res = load_torch(tmp_path / "run" / "checkpoint.pt")
    assert res["next_task"] == 3
