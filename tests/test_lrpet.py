"""LRPET strategy: config validation, surgery, projection, zero forgetting, accounting, resume."""

import pytest
import torch
from torch import nn

from cl_compress.compress import lowrank
from cl_compress.engine.callbacks.checkpoint import load_model_state
from cl_compress.errors import ConfigError
from cl_compress.models import ContinualModel, build_backbone
from cl_compress.rundir.io import load_torch
from cl_compress.strategies import Phase, StreamInfo, TaskData, TrainSettings, get_strategy
from cl_compress.testing import old_task_outputs, run_quick


def _strategy(**params):
    return get_strategy("lrpet").from_config(params, TrainSettings())


def _setup(model_name="mlp", n_tasks=3, shape=(1, 8, 8), **params):
    kw = {"mlp": {"hidden": [16, 12]}, "cnn": {"channels": (6, 8), "batch_norm": True}}.get(model_name, {})
    body, feat = build_backbone(model_name, shape, **kw)
    model = ContinualModel(body, feat, [2] * n_tasks, multi_head=True)
    s = _strategy(**params)
    s.setup(model, StreamInfo(n_tasks, "task", shape, [2] * n_tasks))
    return model, s


@pytest.mark.parametrize("params, match", [
    ({"rank_ratio": 1.5}, r"strategy.rank_ratio=1.5 is out of range; valid range is \(0, 1\]"),
    ({"rank_ratio": 0.0}, r"rank_ratio=0.0 is out of range"),
    ({"redu_fac": 1.0}, r"strategy.redu_fac=1.0 is out of range; valid range is \[0, 1\)"),
    ({"rank": -1}, r"strategy.rank=-1 is out of range"),
    ({"rank": 2.5}, r"strategy.rank=2.5 must be an integer"),
    ({"mode": "svd"}, r"strategy.mode='svd' is invalid; choose one of \['lrpet', 'truncate'\]"),
    ({"layers": "bn"}, r"strategy.layers='bn' is invalid"),
    ({"sharing": "shared"}, r"strategy.sharing='shared' is invalid; choose one of "
                            r"\['residual', 'independent'\]"),
    ({"ranks": 3}, r"unknown parameter"),
])
def test_config_errors_before_training(params, match):
    with pytest.raises(ConfigError, match=match):
        _strategy(**params)


def test_setup_wraps_layers_with_chosen_ranks_and_pairs_bn():
    model, s = _setup(rank_ratio=0.5)
    assert s.ranks() == {"1": 8, "3": 6}  # half of min(out, in): 16 -> 8 and 12 -> 6
    _, s = _setup(rank=2, layers="conv")
    assert s.ranks() == {"1": None, "3": None}  # linear layers stay dense per task
    _, s = _setup("cnn", rank=2)
    assert set(s.bn_of) == {"0", "4"} and set(s.ranks()) == {"0", "4"}
    body, feat = build_backbone("resnet18", (3, 8, 8), nf=4)
    s = _strategy(rank=2)
    s.setup(ContinualModel(body, feat, [2], True), StreamInfo(1, "task", (3, 8, 8), [2]))
    convs = [n for n in s.layers if s.layers[n].conv is not None]
    assert len(convs) == 20 and set(s.bn_of) == set(convs)  # every conv feeds a BN, shortcuts too


def test_unsupported_body_module_is_refused():
    body = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.LayerNorm(4))
    model = ContinualModel(body, 4, [2], True)
    with pytest.raises(ConfigError, match="cannot handle LayerNorm"):
        _strategy().setup(model, StreamInfo(1, "task", (4,), [2]))


def test_projection_step_rank_and_energy():
    for transfer in (True, False):
        model, s = _setup(rank=3, energy_transfer=transfer)
        layer = s.layers["3"]
        before = float(layer.delta.detach().double().square().sum())
        s.project_all()
        after = float(layer.delta.detach().double().square().sum())
        assert lowrank.numerical_rank(layer.delta) <= 3
        assert after == pytest.approx(before, rel=1e-5) if transfer else after < 0.9 * before
        assert s.timing["projections"] == 1


def _task_data(x):
    loader = [(x[i:i + 4], torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
              for i in range(0, len(x), 4)]
    return TaskData(0, 2, lambda: loader, None, lambda x, y: 0.0)


def test_step_schedule_and_final_projection_before_storing():
    model, s = _setup(rank=2, project_every=3)
    s.before_task(0, None)
    s.before_phase(0, Phase(), None)
    for _ in range(7):
        with torch.no_grad():
            s.layers["3"].delta.add_(0.1)  # an "optimiser step" that leaves rank 2
        s.after_optimizer_step(0)
    assert s.timing["projections"] == 2 and s.dirty
    s.after_task(0, _task_data(torch.randn(8, 1, 8, 8)))
    assert s.timing["projections"] == 3 and not s.dirty  # steps 7 was projected before storing
    layer = s.layers["3"]
    assert torch.allclose(layer.frozen(0), layer.delta, atol=1e-5)  # stored = projected weight
    assert lowrank.numerical_rank(layer.frozen(0)) <= 2


def test_truncate_baseline_fine_tunes_svd_factors():
    model, s = _setup(rank=2, mode="truncate")
    assert [p.name for p in s.phases(0)] == ["dense", "finetune"]
    assert s.callbacks() == []  # no projection during training
    s.before_task(0, None)
    layer = s.layers["3"]
    dense = layer.delta.detach().clone()
    s.before_phase(0, Phase(name="finetune"), None)
    assert layer.use_factors and layer.fu.requires_grad and not layer.delta.requires_grad
    assert torch.allclose(layer.fu @ layer.fv, lowrank.truncate(dense, 2), atol=1e-5)
    x = torch.randn(3, 1, 8, 8)
    h = model.body[:3](x)
    assert torch.allclose(layer(h), h @ (layer.fu @ layer.fv).T + layer.bias, atol=1e-6)
    s.after_task(0, _task_data(x))
    assert torch.equal(layer.stored_u[0], layer.fu) and torch.equal(layer.stored_v[0], layer.fv)
    assert s.timing["projections"] == 0


def test_bn_statistics_recalibrated_for_stored_weights():
    model, s = _setup("cnn", rank=2, bn_recalibrate=1)
    bn = model.body[1]
    bn.momentum = 0.1
    s.before_task(0, None)
    x = torch.randn(4, 1, 8, 8)
    s.after_task(0, _task_data(x))
    conv = nn.functional.conv2d(x, s.layers["0"].frozen(0), padding=1)
    assert torch.allclose(bn.running_mean, conv.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, conv.var((0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1 and s.layers["0"].eval_task is None
    assert torch.equal(s.norm_states[0]["1.running_mean"], bn.running_mean)


def test_bn_rectified_projection_in_cnn():
    model, s = _setup("cnn", rank=2)
    bn = model.body[5]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.running_var.uniform_(0.5, 2.0)
    layer = s.layers["4"]
    raw = layer.delta.detach().clone()
    s.project_all()
    a = lowrank.bn_row_scale(bn)
    want = lowrank.project(raw, 2, row_scale=a)
    assert torch.allclose(layer.delta, want) and not torch.allclose(want, lowrank.project(raw, 2))


@pytest.mark.parametrize("extra", [
    ["strategy.project_every=3"],
    ["strategy.mode=truncate"],
    ["model=cnn", "model.batch_norm=true", "strategy.rank=2"],
    ["strategy.sharing=independent", "strategy.project_every=3"],
    ["strategy.sharing=independent", "strategy.mode=truncate"],
    ["strategy.sharing=independent", "model=cnn", "model.batch_norm=true", "strategy.rank=2"],
])
def test_zero_forgetting_old_task_outputs_bit_identical(extra, tmp_path):
    outs = old_task_outputs(["strategy=lrpet"] + extra, tmp_path / "run")
    assert len(outs) == 3
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("sharing", ["residual", "independent"])
def test_run_stores_rank_k_factors_and_accounts_honestly(sharing, tmp_path):
    seen = {}

    def grab(t, model, strategy):
        seen["model"], seen["strategy"] = model, strategy
        model.eval()
        with torch.no_grad(), strategy.task_context(0):
            seen.setdefault("out", []).append(model(torch.ones(3, 1, 8, 8), 0).clone())

    res = run_quick(tmp_path / "run", ["strategy=lrpet", "strategy.rank=4",
                                       f"strategy.sharing={sharing}"], on_task_end=grab)
    model, s = seen["model"], seen["strategy"]
    # independent: every task learns from scratch in 2 short epochs (no transfer from the
    # earlier tasks; task 0, the same in both, reaches 0.55 here): a lower bar
    assert res["bwt"] == 0.0 and res["plasticity"] > (0.8 if sharing == "residual" else 0.7)
    # residual: every task adds rank <= k, task j = stored sum of terms 0..j;
    # independent: task j = its own term, rank <= k, no shared part
    for layer in s.layers.values():
        assert lowrank.numerical_rank(layer.frozen(0)) <= 4
        for j in (1, 2):
            own = layer.term(j).reshape(layer.shape)
            if sharing == "residual":
                assert torch.allclose(layer.frozen(j), layer.frozen(j - 1) + own)
                assert lowrank.numerical_rank(layer.frozen(j) - layer.frozen(j - 1), rtol=1e-4) <= 4
            else:
                assert torch.equal(layer.frozen(j), own)
                assert lowrank.numerical_rank(layer.frozen(j)) <= 4
    # stored params: T * sum_layers(k * (out + in) + out) + heads
    body = 3 * (4 * (256 + 64) + 256 + 4 * (256 + 256) + 256)  # synthetic: 8x8 inputs
    heads = 3 * (256 * 2 + 2)
    assert res["compression"]["stored_params"] == body + heads
    assert res["compression"]["stored_bits"] == 32 * (body + heads)
    # the artifact holds exactly the factors the evaluation uses
    art = load_torch(tmp_path / "run" / "model_artifact.pt")
    assert art["tasks"] == 3
    for name, layer in s.layers.items():
        e = art["layers"][name]
        assert e["u"].shape == (3, layer.shape[0], 4) and e["v"].shape == (3, 4, layer.shape[1])
        w = sum(e["u"][i] @ e["v"][i] for i in (range(3) if sharing == "residual" else [2]))
        assert torch.equal(w, layer.frozen(2)) and torch.equal(e["bias"][2], layer.stored_bias[2])
    n_art = sum(v.numel() for e in art["layers"].values() for k, v in e.items() if k in ("u", "v", "bias"))
    assert n_art + sum(v.numel() for h in art["heads"] for v in h.values()) == body + heads
    # resume: fresh model + setup + strategy state + model state answers identically
    ck = load_torch(tmp_path / "run" / "checkpoint.pt")
    body2, feat = build_backbone("mlp", (1, 8, 8), hidden=[256, 256])
    model2 = ContinualModel(body2, feat, [2, 2, 2], True)
    s2 = _strategy(rank=4, sharing=sharing)
    s2.setup(model2, StreamInfo(3, "task", (1, 8, 8), [2, 2, 2]))
    s2.load_state_dict(ck["strategy"])
    load_model_state(model2, ck["model"])
    model2.eval()
    x = torch.randn(5, 1, 8, 8)
    for j in range(3):
        with torch.no_grad(), s.task_context(j), s2.task_context(j):
            assert torch.equal(model(x, j), model2(x, j))
    assert torch.equal(seen["out"][0], seen["out"][-1])
    extra = res["strategy_extra"]
    assert extra["projections"] == 3 * 2  # epoch-end projections; the last one is the final one
    metrics = s.task_metrics(2)
    assert metrics["rank/body.1"] == 4.0 and 0.0 < metrics["energy_removed/body.3"] < 1.0
    assert extra["ranks"] == {"1": 4, "3": 4} and extra["sharing"] == sharing
    assert s2.proj_stats == s.proj_stats  # the projection statistics survive a resume


def test_independent_tasks_start_afresh_and_share_nothing():
    model, s = _setup(rank=2, sharing="independent")
    layer = s.layers["3"]
    s.before_task(0, None)
    s.after_task(0, _task_data(torch.randn(8, 1, 8, 8)))
    w0, b0 = layer.frozen(0).clone(), layer.stored_bias[0].clone()
    s.before_task(1, None)
    # a fresh draw (not the residual's zero, not task 0's weight), trained without a base
    assert layer.delta.abs().sum() > 0 and not torch.allclose(layer.delta, w0, atol=1e-3)
    assert not torch.allclose(layer.bias, b0)
    bound = 1 / layer.shape[1] ** 0.5
    assert layer.delta.abs().max() <= bound and layer.bias.abs().max() <= bound
    h = torch.randn(3, layer.shape[1])
    assert torch.allclose(layer(h), h @ layer.delta.T + layer.bias, atol=1e-6)
    s.after_task(1, _task_data(torch.randn(8, 1, 8, 8)))
    # (no step was taken, so no projection: the stored term is the SVD truncation)
    assert torch.equal(layer.frozen(0), w0)
    assert torch.allclose(layer.frozen(1), lowrank.truncate(layer.delta, 2), atol=1e-5)


def test_independent_artifact_reproduces_and_sharing_mismatch_is_refused(tmp_path):
    from cl_compress.errors import CheckpointError
    from cl_compress.evaluate_artifact import evaluate_run

    res = run_quick(tmp_path / "a", ["strategy=lrpet", "strategy.sharing=independent",
                                     "train.epochs=null", "train.steps_per_task=3", "train.lr=0.0003"])
    out = evaluate_run(tmp_path / "a")
    assert out["reproduced"] and out["acc_row"] == res["acc_matrix"][-1]
    art = load_torch(tmp_path / "a" / "model_artifact.pt")
    assert art["sharing"] == "independent"
    model, s = _setup("mlp", shape=(1, 8, 8), rank=0)
    with pytest.raises(CheckpointError, match="sharing='independent'"):
        s.load_artifact(art)


@pytest.mark.parametrize("transfer, rho", [(True, 0.0), (True, 0.5), (False, 0.0)])
def test_projection_stats_alpha_and_removed_energy(transfer, rho):
    model, s = _setup(rank=3, energy_transfer=transfer, redu_fac=rho)
    layer = s.layers["3"]
    alphas, removed, heads = [], [], []
    for _ in range(3):
        with torch.no_grad():
            layer.delta.add_(0.05 * torch.randn_like(layer.delta))  # leaves rank 3
        sv = torch.linalg.svdvals(layer.delta.detach().double())
        tail, total, head = sv[3:].square().sum(), sv.square().sum(), sv[:3].square().sum()
        removed.append(float((1 - rho ** 2) * tail / total))
        heads.append(float(head / total))
        alphas.append(float((total - rho ** 2 * tail) / head) if transfer else 1.0)
        s.project_all()
    st = s.projection_summary()["0"]["3"]
    assert st["count"] == 3
    assert st["alpha_mean"] == pytest.approx(sum(alphas) / 3, rel=1e-9)
    assert st["alpha_min"] == pytest.approx(min(alphas)) and st["alpha_max"] == pytest.approx(max(alphas))
    assert st["removed_mean"] == pytest.approx(sum(removed) / 3, rel=1e-9)
    assert st["removed_max"] == pytest.approx(max(removed))
    assert (st["alpha_first"], st["alpha_last"]) == pytest.approx((alphas[0], alphas[-1]))
    assert (st["removed_first"], st["removed_last"]) == pytest.approx((removed[0], removed[-1]))
    assert 0.0 < st["removed_mean"] < 1.0
    if transfer:  # the removed share is handed back: alpha * (1 - removed) == 1
        # the removed share is handed to the head: alpha * head == head + removed
        assert st["alpha_min"] > 1.0
        for a, r, h in zip(alphas, removed, heads):
            assert a * h == pytest.approx(h + r, rel=1e-9)
    else:
        assert st["alpha_min"] == st["alpha_max"] == 1.0
    assert s.task_metrics(0)["alpha/body.3"] == pytest.approx(alphas[-1])


@pytest.mark.parametrize("extra", [["strategy.sharing=independent"],
                                   ["strategy.sharing=independent", "strategy.mode=truncate"]])
@pytest.mark.slow  # 17 s; the kit checks LRPET's default step budget
def test_independent_trains_exactly_the_step_budget(extra, tmp_path):
    """As tests/test_contract.py checks every strategy's default: the phases take exactly
    train.steps_per_task optimiser steps per task; BN re-estimation is counted apart."""
    res = run_quick(tmp_path, ["strategy=lrpet", *extra, "train.epochs=null",
                               "train.steps_per_task=25"])
    b = res["budget"]
    assert b["train_steps_per_task"] == [25] * res["n_tasks"]
    for task in b["per_task"]:
        assert sum(p["steps"] for p in task["phases"].values()) == 25
        assert all(isinstance(v, int) and v > 0 for v in task["extra_steps"].values())


def test_authors_rank_rule_is_the_same_k():
    """The authors' k = int(n - n * prun_goal) (cifar10_train.py, default_parameters) equals
    this project's int(rank_ratio * n) at rank_ratio = 1 - prun_goal: 51 for n = 256."""
    for n in range(1, 2049):
        assert lowrank.choose_rank((n, 4096), ratio=0.2) == max(1, int(n - n * 0.8)), n
    assert lowrank.choose_rank((256, 784), ratio=0.2) == 51


def test_truncate_fine_tunes_at_its_own_lr_scale():
    """The baseline's fine-tuning phase restarts its optimiser and schedule: it runs at
    finetune_lr_scale * train.lr (default 0.1, as PackNet's retrain); scale 1 restarts at
    the full lr right after truncation."""
    train = TrainSettings(lr=0.1, optimizer="sgd")
    s = get_strategy("lrpet").from_config({"mode": "truncate"}, train)
    dense, fine = s.phases(0)
    assert dense.lr == pytest.approx(0.1) and fine.lr == pytest.approx(0.01)
    s1 = get_strategy("lrpet").from_config({"mode": "truncate", "finetune_lr_scale": 1.0}, train)
    assert s1.phases(0)[1].lr == pytest.approx(0.1)
    with pytest.raises(ConfigError, match=r"finetune_lr_scale=0.0 is out of range"):
        get_strategy("lrpet").from_config({"finetune_lr_scale": 0.0}, train)
