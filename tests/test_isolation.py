"""Isolated runs: every multirun job gets its own folder from all its overrides, and a run
never appends to another run's files (issue 12, item 3)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cl_compress.launch import sweep
from cl_compress.tracking import Tracker, TrackerSettings
from cl_compress.train import overrides_subdir

REPO = Path(__file__).resolve().parents[1]
HEADER = ["time", "experience", "epoch", "key", "value"]


def _multirun(args: list[str]) -> None:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "cl_compress.train", *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


def _check_own_files(results: list[Path], lrs: set[float]) -> None:
    """One complete results.json per folder, with its own lr; a metrics.csv with one header
    and the rows of one run (each experience figure once, epochs counted once from 1)."""
    assert len(results) == 2 and len({p.parent for p in results}) == 2
    seen = set()
    for p in results:
        res = json.loads(p.read_text())
        assert len(res["acc_matrix"]) == res["n_tasks"] == 3
        seen.add(res["config"]["train"]["lr"])
        with open(p.parent / "metrics.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == HEADER and HEADER not in rows[1:]
        per_task = [(r[1], r[3]) for r in rows[1:] if r[1]]
        assert per_task and len(per_task) == len(set(per_task))
        epochs = [int(r[2]) for r in rows[1:] if r[2]]
        assert epochs == sorted(epochs) and epochs[0] == 1
    assert seen == lrs


@pytest.mark.slow  # the sweep module's multirun is tested by test_sweep_keeps_swept_settings_apart
def test_multirun_over_one_setting_keeps_two_runs(tmp_path):
    _multirun(["-m", "strategy=naive", "benchmark=synthetic", "train.lr=0.001,0.01",
               "train.steps_per_task=12", "logger=none", "trainer.progress_bar=false",
               f"hydra.sweep.dir={tmp_path}"])
    results = sorted(tmp_path.rglob("results.json"))
    _check_own_files(results, {0.001, 0.01})
    # the folder names the overrides that are not already in the path
    assert {p.parent.parent.name for p in results} == {"train.lr=0.001,train.steps_per_task=12",
                                                       "train.lr=0.01,train.steps_per_task=12"}
    assert all(p.parent.parent.parent == tmp_path / "synthetic-task" / "naive" for p in results)


@pytest.mark.slow  # 11 s: a real sweep; sweep planning is tested in-process
def test_sweep_keeps_swept_settings_apart(tmp_path):
    """A sweep's own multirun: the preset's fixed overrides stay out of the path, a setting
    swept on the command line gets a folder per value."""
    preset = {"preset": "p", "overrides": ["train.steps_per_task=12", "train.batch_size=32"]}
    jobs, configs, _ = sweep.plan(preset, ["naive"], [0], ["synthetic"], "iso", tmp_path,
                                  ["logger=none", "train.lr=0.001,0.01"])
    assert len(jobs) == 1 and configs == {}
    _multirun(jobs[0])
    results = sorted(tmp_path.rglob("results.json"))
    _check_own_files(results, {0.001, 0.01})
    assert {p.relative_to(tmp_path).as_posix() for p in results} == {
        "synthetic-task/naive/train.lr=0.001/s0/results.json",
        "synthetic-task/naive/train.lr=0.01/s0/results.json"}


def test_sweep_plan_path_names_extra_overrides_only(tmp_path):
    preset = {"preset": "p", "overrides": ["train.epochs=2", "train.lr=0.1"]}
    jobs, _, _ = sweep.plan(preset, ["naive"], [0], ["split_fmnist"], "c", tmp_path,
                            ["train.lr=0.01"])
    excl = next(a for a in jobs[0] if a.startswith("hydra.job.config.override_dirname.exclude_keys="))
    keys = excl.split("=", 1)[1].strip("[]").split(",")
    assert "train.epochs" in keys and "train.lr" not in keys  # replaced on the command line
    assert {"seed", "strategy", "benchmark", "logger.group"} <= set(keys)
    assert sweep.is_sweep("0.1,0.2") and not sweep.is_sweep("[0.1,0.2]")


def test_override_folder_names_cannot_break_the_path():
    assert overrides_subdir("") == ""
    name = overrides_subdir("benchmark.data_root=/a/../../b,train.lr=0.1")
    assert name.count("/") == 1 and name.endswith("/") and ".." in name  # one folder, no climbing
    a, b = overrides_subdir("x=" + "a" * 400 + "1"), overrides_subdir("x=" + "a" * 400 + "2")
    assert a != b and all(len(n.encode()) <= 201 for n in (a, b))


def test_fresh_run_replaces_metrics_resumed_run_appends(tmp_path):
    def one(value: float, resume_task: int | None, experience: int) -> None:
        t = Tracker(tmp_path, TrackerSettings(wandb=False), name="x", group="g", config={},
                    resume_task=resume_task)
        t.log_experience(experience, {"eval/acc/task_0": value})
        t.finish()

    one(0.5, None, 0)
    one(0.7, None, 0)  # a new run in the same folder: the old rows are gone
    rows = list(csv.reader(open(tmp_path / "metrics.csv", newline="")))
    assert rows[0] == HEADER and [r[4] for r in rows[1:]] == ["0.7"]
    one(0.9, 1, 1)  # resume from task 1 continues the file, without a second header
    rows = list(csv.reader(open(tmp_path / "metrics.csv", newline="")))
    assert rows.count(HEADER) == 1 and [r[4] for r in rows[1:]] == ["0.7", "0.9"]
