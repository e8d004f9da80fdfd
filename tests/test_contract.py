"""Every built-in strategy honours the plugin contract, checked by the public kit that plugins
use (``cl_compress.testing.contract``): the contract matrix (every strategy x scenario: task-IL,
and class-IL where the strategy infers the task id) runs each combination once on a small real
stream (sklearn digits, 5 tasks of 2 classes, 8 optimiser steps a task) and checks results and
accounting, the exact step budget, zero forgetting (strategies declaring it), resume equality
and the artifact round trip in a fresh process (see the kit's docstring).

A model or precision dimension is more cases: e.g. ``cases_for(builtin_names(),
model=("model=resnet18",), precision="bf16-mixed")`` in another ``contract_suite(cases=...)``
class (marked ``gpu``), or ``Case(name, scenario, model=..., precision=...)`` entries."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cl_compress
from cl_compress.rundir.io import load_torch
from cl_compress.strategies import builtin_names, get_strategy
from cl_compress.testing import old_task_outputs, run_quick
from cl_compress.testing.contract import KILL_AFTER, Case, _stable, cases_for, contract_suite, same

# Strategies that declare zero forgetting (parameter isolation / one model per task): a new
# built-in must be classified here, so dropping a declaration is caught
ISOLATION = ("individual", "packnet", "ada_qpacknet", "lrpet", "cacl")
NOT_ISOLATION = ("naive",)

CASES: list[Case] = cases_for(builtin_names())


class TestBuiltinContract(contract_suite(cases=CASES, name="BuiltinContract")):
    def test_shared_network_drifts_so_zero_forgetting_is_not_vacuous(self, contract_run):
        run = contract_run(Case("naive"))  # the naive task-IL case of the matrix, run once
        assert len(run.outputs) == 5
        assert not all(torch.equal(run.outputs[0], o) for o in run.outputs[1:])


def test_every_strategy_is_classified():
    assert set(builtin_names()) == set(ISOLATION) | set(NOT_ISOLATION)
    assert {n for n in builtin_names() if get_strategy(n).zero_forgetting} == set(ISOLATION)
    assert len(CASES) >= 2 * len(ISOLATION)  # every isolation method also class-IL


def test_every_builtin_composes_from_its_dataclass():
    from cl_compress.compose import compose_config

    for name in builtin_names():
        assert compose_config([f"strategy={name}"])["strategy"]["name"] == name


def test_load_artifact_refuses_another_strategys_artifact(tmp_path):
    from cl_compress.errors import CheckpointError
    from cl_compress.evaluate_artifact import evaluate_run

    run_quick(tmp_path / "a", ["strategy=naive", "train.epochs=null", "train.steps_per_task=3"])
    results = tmp_path / "a" / "results.json"
    res = json.loads(results.read_text())
    res["config"]["strategy"] = {"name": "packnet"}  # the artifact is naive's dense model
    res.pop("artifact_sha256")
    results.write_text(json.dumps(res))
    with pytest.raises(CheckpointError, match="loads 'packnet-v1' artifacts, not 'dense-fp32'"):
        evaluate_run(tmp_path / "a")


# --- the contract on a ResNet, in bf16 mixed precision -------------------------------------
# The same checks on a tiny BatchNorm ResNet-18 (nf=4, 1x8x8 synthetic images, 3 tasks, 4 steps
# a task) trained with trainer.precision=bf16-mixed on the CPU: convolutions, 1x1-conv
# shortcuts and per-task BatchNorm (statistics and affine stored per task by each strategy's
# norm policy), with every forward in bfloat16 while masks, frozen weights, projections, SVDs
# and codebooks stay float32. The uninterrupted run is in the default suite for every strategy
# (zero forgetting, float32 state, artifact round trip); resume equality on the ResNet is slow
# (the resume machinery is the same as the MLP's, which the default run covers).
RESNET = ["benchmark=synthetic", "model=resnet18", "model.nf=4", "train.epochs=null",
          "train.steps_per_task=4", "train.batch_size=16", "trainer.precision=bf16-mixed"]
# Ada-QPacknet: 2 prune candidates, scored without fine-tuning (the search's Trainers are the
# same code on any model; the MLP contract trains them)
RESNET_STRATEGY = {"ada_qpacknet": ["strategy.population=2", "strategy.search_epochs=0"]}


def _resnet_overrides(name: str) -> list[str]:
    return [f"strategy={name}", *RESNET_STRATEGY.get(name, [])]


@pytest.fixture(scope="module")
def resnet_runs(tmp_path_factory):
    """``name -> (run dir, results, task-0 logits after every task)`` of the bf16 ResNet run."""
    root = tmp_path_factory.mktemp("contract-resnet")
    cache: dict[str, tuple[Path, dict, list[torch.Tensor]]] = {}

    def get(name: str):
        if name not in cache:
            d = root / name
            outs = old_task_outputs(_resnet_overrides(name), d, extra=RESNET)
            cache[name] = (d, json.loads((d / "results.json").read_text()), outs)
        return cache[name]

    return get


@pytest.mark.parametrize("name", builtin_names())
def test_resnet_bf16_zero_forgetting_and_float32_state(name, resnet_runs):
    d, res, outs = resnet_runs(name)
    assert res["config"]["trainer"]["precision"] == "bf16-mixed"
    assert res["config"]["model"] == {"name": "resnet18", "nf": 4}
    assert res["n_tasks"] == 3 and len(outs) == 3
    assert res["budget"]["train_steps_per_task"] == [4, 4, 4]
    ck = load_torch(d / "checkpoint.pt")
    # mixed precision computes in bf16 but stores nothing in it: weights, BN statistics,
    # masks, factors, codebooks and per-task norm states stay float32 (or integer)
    low = [k for k, v in _tensors(ck["model"]) + _tensors(ck["strategy"])
           if v.dtype in (torch.bfloat16, torch.float16)]
    assert not low, low[:5]
    assert any(k.endswith("running_var") for k, _ in _tensors(ck["model"]))  # a BN network
    if name not in ISOLATION:
        assert not all(torch.equal(outs[0], o) for o in outs[1:])
        return
    assert all(torch.equal(outs[0], o) for o in outs[1:]), name
    R = res["acc_matrix"]
    assert all(R[i][j] == R[j][j] for j in range(3) for i in range(j, 3)), R


@pytest.mark.slow  # 14 s: a fresh process; the MLP matrix's round trip runs in the default suite
def test_resnet_bf16_artifacts_reproduce_in_a_fresh_process(resnet_runs):
    """The bf16-trained ResNet runs' artifacts, loaded in float32 in a fresh process, give the
    row each run measured (evaluation is float32 in both)."""
    runs = [resnet_runs(n) for n in builtin_names()]
    p = subprocess.run([sys.executable, "-m", "cl_compress.evaluate_artifact", *(str(d) for d, _, _ in runs)],
                       capture_output=True, text=True, cwd=Path(cl_compress.__file__).parents[1])
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(ln) for ln in p.stdout.strip().splitlines()]
    assert [(o["strategy"], o["acc_row"]) for o in lines] == [(n, r["acc_matrix"][-1])
                                                              for n, (_, r, _) in zip(builtin_names(), runs)]


def _tensors(obj, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _tensors(v, f"{prefix}.{k}")]
    if isinstance(obj, list | tuple):
        return [kv for i, v in enumerate(obj) for kv in _tensors(v, f"{prefix}.{i}")]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_names())
def test_resnet_bf16_resume_equals_an_uninterrupted_run(name, resnet_runs, tmp_path):
    want_dir, want, _ = resnet_runs(name)
    want = json.loads(json.dumps(want))
    run = tmp_path / "r"
    ov = [*_resnet_overrides(name), *RESNET]

    def kill(t, model, strategy):
        if t == KILL_AFTER:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_quick(run, ov, on_task_end=kill)
    got = run_quick(run, ov + ["resume=true"])
    size = (got["compression"].pop("model_bytes"), want["compression"].pop("model_bytes"))
    assert abs(size[0] - size[1]) <= 256, size
    assert same(load_torch(run / "model_artifact.pt"), load_torch(want_dir / "model_artifact.pt"))
    assert _stable(got) == _stable(want)
