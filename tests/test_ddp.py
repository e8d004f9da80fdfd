"""The runner under Lightning DDP: 2 CPU processes (gloo), Lightning's own launcher.

One smoke test runs by default (Ada-QPacknet: PackNet's masks and frozen weights, plus its
search candidates trained by Trainers of their own, must stay identical on both ranks); the
per-strategy and single-process comparisons are ``slow``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cl_compress.strategies import builtin_names
from cl_compress.testing import run_quick

REPO = Path(__file__).resolve().parents[1]
BASE = ["logger=none", "trainer.progress_bar=false", "benchmark.backend=native", "train.steps_per_task=null"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.progress_bar=false"]
# With 2 ranks each rank sees half of every epoch; halving the per-rank batch keeps the
# effective batch size and the number of optimiser steps equal to the single-process run.
TOLERANCE = 0.05  # absolute, on avg_acc (sample order differs, so results are close, not equal)


def _ddp_run(run_dir: Path, overrides: list[str], base: list[str] = BASE) -> dict:
    cmd = [sys.executable, "-m", "cl_compress.train", *base, *DDP, *overrides, f"hydra.run.dir={run_dir}"]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow  # 17 s: two gloo ranks; the DDP tests run with -m slow
def test_ddp_smoke_ranks_agree(tmp_path):
    """Default run: 2 gloo ranks train Ada-QPacknet on a tiny stream (12 steps a task, two
    search candidates per task); the runner compares the SHA-256 fingerprints of model +
    strategy state of both ranks after every task and stores whether they agreed, which must
    be true."""
    base = [b for b in BASE if not b.startswith("train.steps_per_task")]
    res = _ddp_run(tmp_path / "smoke", ["strategy=ada_qpacknet", "benchmark=synthetic",
                                        "train.epochs=null", "train.steps_per_task=12",
                                        "train.batch_size=16", "strategy.population=2"], base)
    assert res["ddp"]["world_size"] == 2 and res["ddp"]["ranks_identical"] is True, res["ddp"]
    assert res["n_tasks"] == 3 and res["budget"]["train_steps_per_task"] == [12, 12, 12]
    # every task trained its search candidates under DDP too
    assert all(t["extra_steps"].get("search", 0) > 0 for t in res["budget"]["per_task"]), res["budget"]


@pytest.mark.slow
def test_ddp_matches_single_process(tmp_path):
    common = ["strategy=naive", "benchmark=split_digits", "train.epochs=2"]
    ddp = _ddp_run(tmp_path / "ddp", common + ["train.batch_size=32"])
    single = run_quick(tmp_path / "single", BASE[1:] + common + ["train.batch_size=64"])
    assert ddp["ddp"]["world_size"] == 2 and ddp["ddp"]["ranks_identical"] is True
    assert set(ddp) == set(single)
    assert len(ddp["acc_matrix"]) == len(single["acc_matrix"]) == 5
    assert abs(ddp["avg_acc"] - single["avg_acc"]) < TOLERANCE, (ddp["avg_acc"], single["avg_acc"])


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in builtin_names() if n not in ("naive",)])
def test_every_strategy_keeps_ranks_identical(name, tmp_path):
    """Weights, masks, factors and codebooks are bit-identical on both ranks after every
    task (the runner compares SHA-256 fingerprints of model + strategy state)."""
    res = _ddp_run(tmp_path / name, [f"strategy={name}", "benchmark=synthetic", "train.epochs=1",
                                     "train.batch_size=16"])
    assert res["ddp"] == {**res["ddp"], "world_size": 2, "ranks_identical": True}
    assert res["n_tasks"] == 3 and 0.0 <= res["avg_acc"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("sync_bn", [False, pytest.param(True, marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="SyncBatchNorm: GPU only")])])
def test_isolation_strategies_keep_ranks_identical_on_a_batchnorm_resnet(sync_bn, tmp_path):
    """Every isolation strategy on a tiny BatchNorm ResNet-18 (nf=4) under 2 gloo ranks: the
    SHA-256 fingerprints of model + strategy state (weights, masks, factors, codebooks,
    per-task BatchNorm states) agree on both ranks after every task, with per-rank batch
    statistics (rank 0's running statistics kept) and, on GPUs (SyncBatchNorm has no CPU
    implementation), with SyncBatchNorm."""
    from tests.test_contract import ISOLATION

    base = [b for b in BASE if not b.startswith("train.steps_per_task")]
    for name in ISOLATION:
        extra = ["strategy.population=2", "strategy.search_epochs=0"] if name == "ada_qpacknet" else []
        gpu = ["trainer.accelerator=gpu"] if sync_bn else []
        res = _ddp_run(tmp_path / f"{name}-{sync_bn}", [
            f"strategy={name}", "benchmark=synthetic", "model=resnet18", "model.nf=4",
            "train.epochs=null", "train.steps_per_task=4", "train.batch_size=16",
            f"trainer.sync_batchnorm={str(sync_bn).lower()}", *gpu, *extra], base)
        assert res["ddp"]["world_size"] == 2 and res["ddp"]["ranks_identical"] is True, (name, res["ddp"])
        assert res["n_tasks"] == 3, name
