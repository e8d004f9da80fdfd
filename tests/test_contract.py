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

import pytest
import torch

from cl_compress.strategies import builtin_names, get_strategy
from cl_compress.testing import run_quick
from cl_compress.testing.contract import Case, cases_for, contract_suite

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
