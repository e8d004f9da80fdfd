"""Inference FLOPs per task (cl_compress.engine.flops): analytic counts, thin factorised forwards."""

import pytest
import torch
from torch import nn

from cl_compress.benchmarks import BenchmarkSpec, build_stream
from cl_compress.compress.svd import SVDLinear
from cl_compress.engine.flops import deployed, forward_flops
from cl_compress.testing import run_quick

HIDDEN = ["model.hidden=[32,32]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """naive, PackNet, CACL and LRPET on the synthetic stream (MLP 64-32-32): results and the
    final model and strategy of each."""
    out = {}
    for name, extra in (("naive", []), ("packnet", []),
                        ("cacl", ["strategy.energy_sv=0.05", "strategy.sigma_lr_scale=5"]),
                        ("lrpet", ["strategy.rank=4"]),
                        ("lrpet-independent", ["strategy.rank=4", "strategy.sharing=independent"])):
        final = {}

        def keep(t, model, strategy, final=final):
            final["model"], final["strategy"] = model, strategy

        res = run_quick(tmp_path_factory.mktemp(name) / "run",
                        [f"strategy={name.split('-')[0]}", *HIDDEN, *extra], on_task_end=keep)
        out[name] = (res, final["model"], final["strategy"])
    return out


def _dense_flops(model, task):
    """2 * sum(in * out) over the linear layers answering for ``task`` (body + its head)."""
    layers = [m for m in model.body.modules() if isinstance(m, nn.Linear | SVDLinear)]
    shapes = [(m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.fan_in, m.out)
              for m in layers]
    head = model.head(task)
    return 2 * (sum(i * o for i, o in shapes) + head.in_features * head.out_features)


def test_mlp_counts_equal_the_analytic_dense_count(runs):
    res, model, _ = runs["naive"]
    inf = res["inference"]
    assert inf["unit"] == "FLOPs" and len(inf["flops_per_task"]) == res["n_tasks"] == 3
    assert inf["flops_per_task"] == [_dense_flops(model, t) for t in range(3)]
    assert _dense_flops(model, 0) == 2 * (64 * 32 + 32 * 32 + 32 * model.head(0).out_features)
    # a batch of 5 costs 5 times one sample: the count is per sample
    x = build_stream(BenchmarkSpec("synthetic")).experiences[0].test_x[:5]
    assert forward_flops(model, x, 0) == 5 * inf["flops_per_task"][0]


def test_packnet_is_dense_in_flops_sparse_in_weights(runs):
    dense = runs["naive"][0]["inference"]
    res, model, _ = runs["packnet"]
    inf = res["inference"]
    assert inf["flops_per_task"] == dense["flops_per_task"]  # masked zeros are still multiplied
    # task 0 answers with half of each body layer (prune 0.5) and its own head
    full = [sum(int((m.weight != 0).sum()) for m in model.body.modules() if isinstance(m, nn.Linear))
            + model.head(t).weight.numel() for t in range(3)]
    assert inf["nonzero_weights_per_task"][0] < 0.6 * full[0]
    assert inf["nonzero_weights_per_task"] == sorted(inf["nonzero_weights_per_task"])


@pytest.mark.parametrize("name", ["cacl", "lrpet", "lrpet-independent"])
def test_low_rank_layers_count_thin_products(runs, name):
    res, model, strategy = runs[name]
    inf = res["inference"]
    dense = runs["naive"][0]["inference"]["flops_per_task"]
    x = build_stream(BenchmarkSpec("synthetic")).experiences[0].test_x[:4]
    for t in range(3):
        _deployed_matches(model, strategy, x, t)
        head = model.head(t)
        expect = 2 * head.in_features * head.out_features
        for (fan, out), r in _layer_ranks(res, strategy, name, t):
            expect += 2 * min(r * (fan + out), fan * out)
        assert inf["flops_per_task"][t] == expect
        assert inf["flops_per_task"][t] <= dense[t]  # never worse: dense when thin costs more
    # task 0 uses fewer components than the break-even in*out/(in+out) (CACL's initial rank)
    assert inf["flops_per_task"][0] < dense[0]


def _deployed_matches(model, strategy, x, t):
    """The thin (deployed) forward computes the model's own function for task ``t``."""
    with strategy.task_context(t):
        want = model(x, t)
        with deployed(model):
            got = model(x, t)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _layer_ranks(res, strategy, name, t):
    if name == "cacl":
        ranks = res["strategy_extra"]["ranks"]
        return [((m.fan_in, m.out), ranks[f"layer{i}"][t]) for i, m in enumerate(strategy.layers)]
    terms = 1 if strategy.cfg.sharing == "independent" else t + 1  # independent: own term only
    return [((la.shape[1], la.shape[0]), terms * la.k) for la in strategy.layers.values()]


@pytest.mark.parametrize("name,extra", [
    ("cacl", ["strategy.factorize=[conv]", "strategy.growth=none"]),
    ("lrpet", ["strategy.rank=2"]),
    ("lrpet", ["strategy.rank=2", "strategy.sharing=independent"]),
])
def test_conv_layers_thin_forward_matches(name, extra, tmp_path):
    """Conv: a r-channel conv then a 1x1 conv gives the model's output; the count is the
    analytic one (dense where r * (fan_in + out) >= fan_in * out)."""
    final = {}

    def keep(t, model, strategy):
        final["m"], final["s"] = model, strategy

    res = run_quick(tmp_path / "run", [f"strategy={name}", "model=cnn", "model.channels=[8,16]",
                                       "train.epochs=1", *extra], on_task_end=keep)
    model, strategy = final["m"], final["s"]
    x = build_stream(BenchmarkSpec("synthetic")).experiences[0].test_x[:3]
    for t in range(3):
        _deployed_matches(model, strategy, x, t)
        assert res["inference"]["flops_per_task"][t] == _analytic(model, strategy, x[:1], t)
    assert "error" not in res["inference"]


def _analytic(model, strategy, x, t):
    """2 * per output position min(r * (fan_in + out), fan_in * out) for factorised layers,
    fan_in * out for dense conv/linear ones, from shapes and the output sizes seen."""
    from cl_compress.compress.svd import SVDFactorized
    from cl_compress.strategies.lrpet import TaskResidualLayer

    sizes, hooks = {}, []
    for m in model.modules():
        if isinstance(m, SVDFactorized | TaskResidualLayer | nn.Linear | nn.Conv2d):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o: sizes.__setitem__(mod, (o[0, 0].numel(),
                                                          getattr(mod, "active_rank", None)))))
    with torch.no_grad(), strategy.task_context(t):
        model(x, t)
    for h in hooks:
        h.remove()
    total = 0
    for m, (positions, r) in sizes.items():
        if isinstance(m, SVDFactorized):
            fan, out = m.fan_in, m.out
            cost = min(r * (fan + out), fan * out)
        elif isinstance(m, TaskResidualLayer):
            out, fan = m.shape[0], int(torch.tensor(m.shape[1:]).prod())
            terms = 1 if m.independent else t + 1
            cost = min(terms * m.k * (fan + out), fan * out)
        else:
            cost = m.weight[0].numel() * m.weight.shape[0]
        total += 2 * cost * positions
    return total
