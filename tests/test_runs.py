"""Reliability of whole runs: determinism, resume after a kill, NaN loss, bad checkpoints."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cl_compress.engine.system import NonFiniteLossError
from cl_compress.errors import CheckpointError
from cl_compress.rundir.io import load_torch
from cl_compress.testing import run_quick

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["benchmark=split_digits", "benchmark.backend=native", "train.epochs=1"]
STABLE_KEYS = ("acc_matrix", "avg_acc", "bwt", "forgetting", "plasticity", "compression",
               "strategy_config", "n_tasks", "seed")


def _stable(res: dict) -> dict:
    return {k: res[k] for k in STABLE_KEYS}


def test_same_seed_same_matrix_and_weights(tmp_path):
    a = run_quick(tmp_path / "a", DIGITS)
    b = run_quick(tmp_path / "b", DIGITS)
    assert a["acc_matrix"] == b["acc_matrix"]
    assert any(v < 1.0 for row in a["acc_matrix"] for v in row)  # not a trivially perfect matrix
    wa = load_torch(tmp_path / "a/checkpoint.pt")["model"]
    wb = load_torch(tmp_path / "b/checkpoint.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = run_quick(tmp_path / "c", DIGITS + ["seed=1"])
    assert c["acc_matrix"] != a["acc_matrix"]


KILLER = textwrap.dedent("""
    import os, signal, sys
    from cl_compress.testing import run_quick

    def die(t, model, strategy):
        if t == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

    run_quick(sys.argv[1], sys.argv[3:], on_task_end=die)
""")


@pytest.mark.slow  # 8 s: a real SIGKILL; resume equality is in the contract kit for every strategy
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):  # a real SIGKILL, no cleanup
    full = run_quick(tmp_path / "full", DIGITS)
    run = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(run), "1", *DIGITS], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (run / "results.json").exists()
    assert load_torch(run / "checkpoint.pt")["next_task"] == 2
    resumed = run_quick(run, DIGITS + ["resume=true"])
    assert _stable(resumed) == _stable(full)
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["acc_matrix"] == full["acc_matrix"]


def test_resume_needs_a_valid_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run_quick(tmp_path / "none", ["resume=true"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        run_quick(bad, ["resume=true"])
    ok = tmp_path / "ok"
    run_quick(ok, [])
    with pytest.raises(CheckpointError, match="seed"):
        run_quick(ok, ["resume=true", "seed=5"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    run = tmp_path / "nan"
    saved = {}

    def diverge(t, model, strategy):  # after task 0 an absurd learning rate: the loss overflows
        saved["ckpt"] = (run / "checkpoint.pt").read_bytes()
        strategy.train.lr = 1e30

    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        run_quick(run, ["strategy=naive", "train.optimizer=sgd", "train.momentum=0.0"], on_task_end=diverge)
    assert (run / "checkpoint.pt").read_bytes() == saved["ckpt"]
    assert load_torch(run / "checkpoint.pt")["next_task"] == 1


CLI_BAD = [  # the in-process checks of every setting: test_bad_input, test_reliability
    ("strategy=nope", "unknown strategy 'nope'; choose one of:"),
    ("train.steps_per_task=0", "train.steps_per_task=0 must be an integer >= 1"),
    pytest.param("benchmark=nope", "unknown benchmark 'nope'", marks=pytest.mark.slow),
    pytest.param("strategy.name=nope", "unknown strategy 'nope'; choose one of:", marks=pytest.mark.slow),
    pytest.param("train.epochs=3", "set exactly one budget", marks=pytest.mark.slow),
    ("benchmark.data_root=/no/such/folder", "benchmark.data_root='/no/such/folder' does not exist"),
]


@pytest.mark.parametrize("override,message", CLI_BAD)
def test_cli_bad_input_fails_before_training(tmp_path, override, message):
    env = dict(os.environ, WANDB_MODE="disabled")
    p = subprocess.run([sys.executable, "-m", "cl_compress.train", override, "logger=none",
                        f"hydra.run.dir={tmp_path / 'x'}"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0, override
    assert message in p.stderr + p.stdout, (override, p.stderr[-1500:])
    assert "Epoch" not in p.stderr + p.stdout  # nothing trained
    assert not (tmp_path / "x").exists()  # and no run folder left
