"""Every registered strategy: has a config, runs end to end, honours the plugin contract."""

from pathlib import Path

import pytest
import torch

import cl_compress
from cl_compress.io import load_torch, save_torch
from cl_compress.strategies import builtin_names, get_strategy
from cl_compress.testing import run_quick

CONFIG_DIR = Path(cl_compress.__file__).parent / "configs" / "strategy"
RESULT_KEYS = {
    "strategy", "benchmark", "scenario", "seed", "n_tasks", "acc_matrix", "avg_acc", "bwt",
    "forgetting", "plasticity", "compression", "train_seconds", "config",
}


def test_registry_and_configs_in_sync():
    configs = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    assert set(builtin_names()) == configs
    for name in configs:
        text = (CONFIG_DIR / f"{name}.yaml").read_text()
        assert f"name: {name}" in text


@pytest.mark.parametrize("name", builtin_names())
def test_strategy_contract(name, run_dir):
    res = run_quick(run_dir, [f"strategy={name}"])
    assert RESULT_KEYS <= set(res)
    T = res["n_tasks"]
    assert T == 3 and len(res["acc_matrix"]) == T
    assert all(len(row) == i + 1 for i, row in enumerate(res["acc_matrix"]))
    assert all(0.0 <= a <= 1.0 for row in res["acc_matrix"] for a in row)
    # the synthetic tasks are easy: every strategy must learn each task when it is new
    assert res["plasticity"] > 0.8, res["acc_matrix"]
    comp = res["compression"]
    assert comp["stored_params"] > 0 and comp["stored_bits"] > 0
    assert comp["model_bytes"] == (run_dir / "model_artifact.pt").stat().st_size
    assert comp["ratio_vs_individual"] > 0
    assert (run_dir / "results.json").is_file() and (run_dir / "metrics.csv").is_file()
    # strategy and model state survive a weights_only round trip
    ck = load_torch(run_dir / "checkpoint.pt")
    assert ck["next_task"] == T and ck["strategy_name"] == name
    cls = get_strategy(name)
    assert set(cls.scenarios) <= {"task", "class"}
    save_torch(run_dir / "again.pt", ck["strategy"])
    again = load_torch(run_dir / "again.pt")
    assert _same(again, ck["strategy"])
    load_torch(run_dir / "model_artifact.pt")  # the artifact is weights_only-loadable


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", builtin_names())
def test_strategy_trains_exactly_the_step_budget(name, run_dir):
    """Equal budgets: every strategy, whatever its phases, does exactly train.steps_per_task
    optimiser steps per task in its phases; extra work is reported apart, never hidden."""
    res = run_quick(run_dir, [f"strategy={name}", "train.epochs=null", "train.steps_per_task=25"])
    b = res["budget"]
    assert b["train_steps_per_task"] == [25] * res["n_tasks"]
    for task in b["per_task"]:
        assert sum(p["steps"] for p in task["phases"].values()) == 25
        assert task["samples_seen"] == sum(p["samples"] for p in task["phases"].values()) > 0
        assert all(isinstance(v, int) and v > 0 for v in task["extra_steps"].values())
    assert len(res["acc_before_compression"]) == res["n_tasks"]


def test_every_artifact_reproduces_the_final_row_in_a_fresh_process(tmp_path):
    """Strategy.load_artifact is the inverse of export_artifact for every registered
    strategy: `python -m cl_compress.evaluate_artifact` (one fresh process, another
    initialisation) rebuilds each run's final accuracy row exactly. Short training at a low
    learning rate keeps the accuracies away from 1.0, so a wrong load shows."""
    import json
    import subprocess
    import sys

    runs = []
    for name in builtin_names():
        d = tmp_path / name
        res = run_quick(d, [f"strategy={name}", "train.epochs=null", "train.steps_per_task=3",
                            "train.lr=0.0003"])
        runs.append((d, res["acc_matrix"][-1]))
    assert any(a < 0.99 for _, row in runs for a in row)  # not saturated: a bad load would show
    p = subprocess.run([sys.executable, "-m", "cl_compress.evaluate_artifact", *(str(d) for d, _ in runs)],
                       capture_output=True, text=True, cwd=Path(cl_compress.__file__).parents[1])
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert p.returncode == 0, p.stderr[-2000:]
    assert [(o["strategy"], o["acc_row"]) for o in lines] == \
        [(d.name, row) for d, row in runs]
    assert all(o["reproduced"] for o in lines)


def test_load_artifact_refuses_another_strategys_artifact(tmp_path):
    from cl_compress.errors import CheckpointError
    from cl_compress.evaluate_artifact import evaluate_run

    run_quick(tmp_path / "a", ["strategy=naive", "train.epochs=null", "train.steps_per_task=3"])
    results = tmp_path / "a" / "results.json"
    import json

    res = json.loads(results.read_text())
    res["config"]["strategy"] = {"name": "packnet"}  # the artifact is naive's dense model
    res.pop("artifact_sha256")
    results.write_text(json.dumps(res))
    with pytest.raises(CheckpointError, match="loads 'packnet-v1' artifacts, not 'dense-fp32'"):
        evaluate_run(tmp_path / "a")
