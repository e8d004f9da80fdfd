"""Strategies from outside the package: by import path and by entry point."""

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cl_compress.errors import ConfigError
from cl_compress.strategies import get_strategy
from cl_compress.testing import old_task_outputs, run_quick

PLUGIN = "tests.plugins.ext_strategy:HeadsOnly"


def test_import_path_strategy_runs_and_validates(run_dir):
    res = run_quick(run_dir, [f"strategy.name={PLUGIN}", "+strategy.lr_scale=2.0"])
    assert res["strategy"] == PLUGIN and res["n_tasks"] == 3
    assert res["forgetting"] == 0.0
    msg = r"strategy.lr_scale=-1.0 is out of range; valid range is \(0.0, 10.0\]"
    with pytest.raises(ConfigError, match=msg):
        run_quick(run_dir, [f"strategy.name={PLUGIN}", "+strategy.lr_scale=-1.0"])
    with pytest.raises(ConfigError, match="task-incremental"):
        run_quick(run_dir, [f"strategy.name={PLUGIN}", "benchmark.scenario=class"])


def test_external_strategy_is_bit_exact_on_old_tasks(tmp_path):
    outs = old_task_outputs([f"strategy.name={PLUGIN}"], tmp_path)
    assert len(outs) == 3 and all(torch.equal(outs[0], o) for o in outs[1:])


def test_entry_point_strategy(tmp_path, monkeypatch):
    dist = tmp_path / "my_cl_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cl-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""
        [cl_compress.strategies]
        heads_only = {PLUGIN}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = get_strategy("heads_only")
    assert cls.__name__ == "HeadsOnly"
    from cl_compress.strategies import available

    assert "heads_only" in available()
    assert "tests.plugins" in sys.modules


def test_unknown_names_list_choices():
    with pytest.raises(ConfigError, match="naive"):
        get_strategy("nope")
    with pytest.raises(ConfigError, match="cannot import"):
        get_strategy("no_such_module:Cls")


def test_lookup_does_not_change_the_class(tmp_path, monkeypatch):
    """A lookup is side-effect free, so the entry-point and import-path tests pass in any order."""
    from cl_compress.settings import TrainSettings
    from tests.plugins.ext_strategy import HeadsOnly

    dist = tmp_path / "my_cl_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cl-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[cl_compress.strategies]\nheads_only = {PLUGIN}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(vars(HeadsOnly))
    for name in ("heads_only", PLUGIN):
        assert get_strategy(name) is HeadsOnly
        assert get_strategy(name).from_config({}, TrainSettings(), name=name).name == name
    assert dict(vars(HeadsOnly)) == before and HeadsOnly.name == ""


# --- the plugin helpers (cl_compress.strategies.helpers) ------------------------------------
def _norm_net():
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4),
                         nn.BatchNorm2d(4, affine=False))


def test_norm_state_parts_copy_and_swap():
    from cl_compress.strategies.helpers import (
        load_norm_state,
        norm_layers,
        norm_state,
        swapped_norm_state,
    )

    net = _norm_net()
    layers = norm_layers(net)
    assert list(layers) == ["1", "2", "3"]
    task0 = norm_state(layers, counters=True)
    assert list(task0) == ["1.weight", "1.bias", "1.running_mean", "1.running_var",
                           "1.num_batches_tracked", "2.weight", "2.bias", "3.running_mean",
                           "3.running_var", "3.num_batches_tracked"]
    stats0 = norm_state(layers, affine=False)
    assert list(stats0) == ["1.running_mean", "1.running_var", "3.running_mean", "3.running_var"]
    net(torch.randn(8, 1, 6, 6))  # train mode: running statistics move
    with torch.no_grad():
        layers["1"].weight.add_(1.0)
        layers["2"].bias.add_(1.0)
    live = norm_state(layers, counters=True)
    assert not torch.equal(live["1.running_mean"], task0["1.running_mean"])  # a copy, not a view
    assert not torch.equal(live["1.weight"], task0["1.weight"])
    with swapped_norm_state(layers, task0):
        now = norm_state(layers, counters=True)
        assert all(torch.equal(now[k], v) for k, v in task0.items())
    now = norm_state(layers, counters=True)
    assert all(torch.equal(now[k], v) for k, v in live.items())
    with swapped_norm_state(layers, stats0):  # running statistics only: affine stays live
        now = norm_state(layers)
        assert torch.equal(now["1.running_var"], task0["1.running_var"])
        assert torch.equal(now["1.weight"], live["1.weight"])
    with pytest.raises(ValueError), swapped_norm_state(layers, task0):  # restored on error too
        raise ValueError
    assert torch.equal(norm_state(layers)["1.weight"], live["1.weight"])
    with swapped_norm_state(layers, None):
        pass
    with pytest.raises(KeyError, match="matches no layer"):
        load_norm_state(layers, {"9.weight": torch.zeros(4)})


def test_head_states_round_trip_and_the_flat_form_of_older_artifacts():
    from cl_compress.models import ContinualModel
    from cl_compress.models.backbones import mlp
    from cl_compress.strategies.helpers import head_params, head_states, load_head_states

    def model(seed):
        torch.manual_seed(seed)
        return ContinualModel(mlp((1, 4, 4), hidden=(8,)), 8, [2, 2, 3], multi_head=True)

    a = model(0)
    heads = head_states(a, 2)
    assert len(heads) == 2 and list(heads[0]) == ["weight", "bias"]
    assert head_params(a, 2) == 2 * (8 * 2 + 2) and head_params(a, 3) == 2 * 18 + 8 * 3 + 3
    with torch.no_grad():
        a.heads[0].weight.add_(1.0)
    assert not torch.equal(heads[0]["weight"], a.heads[0].weight)  # a copy
    flat = {f"{j}.{k}": v for j, h in enumerate(heads) for k, v in h.items()}
    for stored in (heads, flat):
        b = model(1)
        assert load_head_states(b, stored) == 2
        for j in range(2):
            assert all(torch.equal(b.heads[j].state_dict()[k], v) for k, v in heads[j].items())
        assert not torch.equal(b.heads[2].weight, a.heads[2].weight)  # unseen head untouched


def test_model_accessor_before_setup_names_strategy_and_hook():
    from cl_compress.strategies import TrainSettings

    s = get_strategy("packnet").from_config({}, TrainSettings())
    with pytest.raises(RuntimeError, match=r"strategy 'packnet': compression_stats\(\) needs the "
                                           r"model, but setup\(model, info\) has not been called"):
        s.compression_stats()
    n = get_strategy("naive").from_config({}, TrainSettings())
    with pytest.raises(RuntimeError, match=r"'naive': export_artifact\(\)"):
        n.export_artifact()


def _stored_two_tasks(name, params, seed=0):
    """``name`` set up on a conv model with BatchNorm, two tasks stored without training
    (random BN statistics, affine parameters and heads per task): (strategy, model, probe)."""
    from cl_compress.models import ContinualModel
    from cl_compress.models.backbones import small_cnn
    from cl_compress.strategies import StreamInfo, TaskData, TrainSettings

    torch.manual_seed(seed)
    model = ContinualModel(small_cnn((1, 8, 8), (4, 6), batch_norm=True), 6, [2, 2], multi_head=True)
    s = get_strategy(name).from_config(params, TrainSettings())
    s.setup(model, StreamInfo(2, "task", (1, 8, 8), [2, 2]))
    gen = torch.Generator().manual_seed(100 + seed)
    for t in range(2):
        data = TaskData(t, 2, lambda: [], None, lambda x, y: 1.0)
        s.before_task(t, data)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                    m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                    m.weight.add_(torch.randn(m.num_features, generator=gen))
            model.heads[t].weight.add_(torch.randn(model.heads[t].weight.shape, generator=gen))
        s.after_task(t, data)
    return s, model, torch.randn(5, 1, 8, 8, generator=gen)


def _answers(s, model, x):
    model.eval()
    with torch.no_grad():
        out = []
        for j in range(2):
            with s.task_context(j):
                out.append(model(x, j))
    return out


@pytest.mark.parametrize("name, params, ckpt_key", [
    ("cacl", {"factorize": ["conv"]}, "bn_stats"),
    ("lrpet", {"rank": 2, "bn_recalibrate": 0}, "bn_states"),
    ("individual", {}, None),
])
def test_old_artifacts_and_checkpoints_still_load(name, params, ckpt_key):
    """Artifacts written before the shared helpers held the heads as one flat
    ``{"<task>.<key>": tensor}`` dict: they still load, and the loaded strategy answers every
    task exactly as the one that wrote them. Checkpoints keep their layout (the per-task
    BatchNorm state as a list under ``bn_stats`` / ``bn_states``), so the pinned state
    fingerprints (tests/data/task_il_pin.json) and resuming stay valid."""
    s, model, x = _stored_two_tasks(name, params)
    want = _answers(s, model, x)
    assert not torch.equal(want[0], want[1])
    art = s.export_artifact()
    old_art = dict(art, heads={f"{j}.{k}": v for j, h in enumerate(art["heads"]) for k, v in h.items()})
    for stored in (art, old_art):
        fresh, fmodel, _ = _stored_two_tasks(name, params, seed=1)
        assert not torch.equal(_answers(fresh, fmodel, x)[0], want[0])
        fresh.load_artifact(stored)
        got = _answers(fresh, fmodel, x)
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    if ckpt_key:
        state = s.state_dict()
        per_task = state[ckpt_key]
        assert isinstance(per_task, list) and len(per_task) == 2 and per_task[0]  # both tasks' BN
        assert "norm_states" not in state
        fresh, _, _ = _stored_two_tasks(name, params, seed=1)
        fresh.load_state_dict(state)
        assert sorted(fresh.norm_states) == [0, 1]
        assert all(torch.equal(fresh.norm_states[t][k], v)
                   for t in (0, 1) for k, v in per_task[t].items())


# --- plugins as first-class as the built-ins (issue 26) --------------------------------------
def _entry_points(tmp_path, monkeypatch, dist: str, eps: dict[str, str]) -> None:
    """A real entry point that importlib.metadata finds: a ``.dist-info`` with
    ``entry_points.txt`` in a folder on sys.path (what ``pip install`` would write)."""
    d = tmp_path / "site" / f"{dist}-0.1.0.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (d / "entry_points.txt").write_text(
        "[cl_compress.strategies]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_generated_plugin_is_first_class_in_process(tmp_path, monkeypatch):
    """From the generator: the package's entry point makes ``strategy=<name>`` compose from its
    Config (no YAML, no ``+``), train, validate, and join sweeps (``strategies: all``) and tune."""
    from cl_compress.cli import list_choices, main, new_strategy
    from cl_compress.compose import compose_config
    from cl_compress.launch import sweep, tune
    from cl_compress.strategies import registered_names

    files = new_strategy("gen_plugin_a", tmp_path / "pkg")
    assert {f.name for f in files} == {"pyproject.toml", "__init__.py", "strategy.py",
                                        "test_contract.py", "README.md"}
    pyproject = (tmp_path / "pkg" / "pyproject.toml").read_text()
    assert 'gen_plugin_a = "gen_plugin_a.strategy:GenPluginA"' in pyproject
    assert main(["new-strategy", "gen_plugin_a", str(tmp_path / "pkg")]) == 2  # never overwrites
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    _entry_points(tmp_path, monkeypatch, "clc_gen_plugin_a",
                  {"gen_plugin_a": "gen_plugin_a.strategy:GenPluginA"})
    assert "gen_plugin_a" in registered_names()
    assert "generated stub" in list_choices()  # make list: its description
    cfg = compose_config(["strategy=gen_plugin_a", "strategy.lr_scale=0.5"])["strategy"]
    assert cfg == {"name": "gen_plugin_a", "variant": None, "lr_scale": 0.5}
    res = run_quick(tmp_path / "run", ["strategy=gen_plugin_a", "strategy.lr_scale=0.5",
                                       "train.epochs=null", "train.steps_per_task=3"])
    assert res["strategy"] == "gen_plugin_a" and res["n_tasks"] == 3
    with pytest.raises(ConfigError, match=r"strategy.lr_scale=-1.0 is out of range"):
        run_quick(tmp_path / "bad", ["strategy=gen_plugin_a", "strategy.lr_scale=-1.0"])
    assert [q.name for q in tune.search_space("gen_plugin_a")] == ["lr_scale"]
    jobs, _, _ = sweep.plan({}, registered_names(), [0], ["synthetic"], "x", tmp_path / "sw", [])
    assert "gen_plugin_a" in jobs[0][1]  # strategy=...,gen_plugin_a,... in the multirun


def _resume_check(tmp_path, monkeypatch, name):
    from cl_compress.testing.contract import Case, ContractSuite, run_case

    _entry_points(tmp_path, monkeypatch, "clc_freeze", {
        "freeze_once": "tests.plugins.freeze_once:FreezeOnce",
        "freeze_from_task": "tests.plugins.freeze_once:FreezeFromTask"})
    want = run_case(Case(name), tmp_path / "uninterrupted")
    ContractSuite().test_resume_equals_an_uninterrupted_run(Case(name), lambda c: want, tmp_path)


def test_kit_fails_a_plugin_that_freezes_once_and_says_why(tmp_path, monkeypatch):
    with pytest.raises(AssertionError, match=r"requires_grad different .* Derive per-task "
                                             r"flags from t in before_task"):
        _resume_check(tmp_path, monkeypatch, "freeze_once")


@pytest.mark.slow
def test_kit_passes_the_same_plugin_with_flags_from_t_in_before_task(tmp_path, monkeypatch):
    _resume_check(tmp_path, monkeypatch, "freeze_from_task")


@pytest.mark.slow
def test_generated_plugin_runs_every_command_from_its_entry_point(tmp_path):
    """The done-when of issue 26, as a user runs it: a package from the generator, made
    importable by PYTHONPATH and a real entry point (a .dist-info; pip is not used), then
    ``make exp`` / ``make compare`` / ``make tune`` (the commands they run) and the contract
    kit, both as the generated test file and as ``pytest -p ... --clc-strategy``."""
    import os
    import subprocess

    from cl_compress.cli import new_strategy

    new_strategy("gen_plugin_b", tmp_path / "pkg")
    d = tmp_path / "site" / "clc_gen_plugin_b-0.1.0.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: clc-gen-plugin-b\nVersion: 0.1.0\n")
    (d / "entry_points.txt").write_text(
        "[cl_compress.strategies]\ngen_plugin_b = gen_plugin_b.strategy:GenPluginB\n")
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, str(tmp_path / "pkg"), str(tmp_path / "site")])}

    def run(*args, cwd=tmp_path):
        p = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
        assert p.returncode == 0, (args, p.stdout[-3000:], p.stderr[-3000:])
        return p.stdout

    tiny = ["train.steps_per_task=3", "logger=none"]
    out = run("-m", "cl_compress.train", "strategy=gen_plugin_b", "strategy.lr_scale=0.5",
              "benchmark=synthetic", "trainer.progress_bar=false", f"hydra.run.dir={tmp_path / 'exp'}", *tiny)
    assert "gen_plugin_b on synthetic" in out
    out = run("-m", "cl_compress.launch.sweep", "--strategies", "gen_plugin_b naive", "--seeds", "0",
              "--benchmarks", "synthetic", "--launcher", "basic", "--poll", "0.5", "--dir",
              str(tmp_path / "sweep"), *tiny)
    assert "2/2 runs done" in out
    assert "gen_plugin_b" in (tmp_path / "sweep" / "report.md").read_text()
    out = run("-m", "cl_compress.launch.tune", "--strategy", "gen_plugin_b", "--benchmark", "synthetic",
              "--trials", "2", "--sampler-seed", "0", "--dir", str(tmp_path / "tune"), "--out",
              str(tmp_path / "tuned.yaml"), *tiny)
    assert "2 of 2 trials finished" in out
    assert "strategy.lr_scale=" in (tmp_path / "tuned.yaml").read_text()
    for args in (["tests"], ["-p", "cl_compress.testing.contract", "--clc-strategy=gen_plugin_b"]):
        out = run("-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *args,
                  cwd=tmp_path / "pkg")
        assert "4 passed, 1 skipped" in out, out[-2000:]


def test_a_plugin_setup_error_comes_before_wandb_starts(tmp_path, monkeypatch):
    _entry_points(tmp_path, monkeypatch, "clc_refuses",
                  {"refuses_in_setup": "tests.plugins.freeze_once:RefusesInSetup"})
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="needs a convolutional body"):
        run_quick(run, ["strategy=refuses_in_setup", "logger=wandb", "logger.mode=offline"])
    assert not list(run.rglob("*wandb*")) and not (run / "metrics.csv").exists()
