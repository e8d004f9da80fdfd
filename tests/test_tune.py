"""Hyper-parameter search (issue 15): the space from hp() ranges, tuning that never reads
the test split, the preset it writes for `make compare`, and two processes sharing one
SQLite study."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from cl_compress import benchmarks
from cl_compress.benchmarks import BenchmarkSpec, build_stream
from cl_compress.launch import sweep, tune
from cl_compress.strategies import builtin_names

REPO = Path(__file__).resolve().parents[1]


class Poison(torch.Tensor):
    """A test tensor that fails the test on any use."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f"the test split was read ({getattr(func, '__name__', func)})")


@pytest.fixture
def poisoned_test_split(monkeypatch):
    """split_digits whose test tensors raise when anything touches them."""
    real = benchmarks.load_digits

    def load(seed=0):
        x_tr, y_tr, x_te, y_te = real(seed=seed)
        return x_tr, y_tr, x_te.as_subclass(Poison), y_te.as_subclass(Poison)

    monkeypatch.setattr(benchmarks, "load_digits", load)
    return real


def test_search_space_from_hp_ranges():
    for name in builtin_names():  # every tune_space names real fields and yields a valid space
        for q in tune.search_space(name):
            assert q.kind == "categorical" or q.low < q.high
    space = {q.name: q for q in tune.search_space("packnet")}
    assert set(space) == {"prune_ratio", "retrain_epochs", "retrain_lr_scale"}  # policies fixed
    assert (space["prune_ratio"].low, space["prune_ratio"].high) == (0.2, 0.9)  # narrowed
    assert space["retrain_epochs"].kind == "int" and space["retrain_lr_scale"].low > 0  # open end
    lrpet = {q.name: q for q in tune.search_space("lrpet")}
    assert "mode" not in lrpet and lrpet["rank_ratio"].log  # the truncate baseline is no setting
    cacl = {q.name: q for q in tune.search_space("cacl")}
    assert cacl["sparse_type"].kind == "categorical" and cacl["energy_sv"].log
    assert [q.name for q in tune.search_space("packnet", ["prune_share"])] == ["prune_share"]
    assert tune.search_space("naive") == []
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        tune.search_space("packnet", ["nope"])


def test_val_split_is_held_out_of_training_data(poisoned_test_split):
    with pytest.raises(AssertionError, match="test split was read"):  # the poison works
        build_stream(BenchmarkSpec("split_digits", backend="native"))
    x_tr, *_ = poisoned_test_split(seed=0)
    rows = {tuple(r.flatten().tolist()) for r in x_tr}
    for backend in ("native", "avalanche"):
        s = build_stream(BenchmarkSpec("split_digits", backend=backend, eval_split="val",
                                       val_fraction=0.2))
        for e in s.experiences:
            val = {tuple(r.flatten().tolist()) for r in e.test_x}
            train = {tuple(r.flatten().tolist()) for r in e.train_x}
            assert val and val <= rows and not val & train  # held out of the training split
            assert e.test_x.shape[0] == round(0.2 * (e.test_x.shape[0] + e.train_x.shape[0]))


@pytest.mark.slow  # 22 s: a 6-trial study; tuning is tested in-process at 1-2 trials
def test_make_tune_packnet_split_digits_6_trials(poisoned_test_split, tmp_path, monkeypatch):
    """`make tune STRATEGY=packnet BENCHMARK=split_digits TRIALS=6` (at 20 steps/task): an
    embedded SQLite study, 6 trials that never touch the test split, a preset that
    `make compare` runs."""
    cmd = subprocess.run(["make", "-n", "tune", "STRATEGY=packnet", "BENCHMARK=split_digits",
                          "TRIALS=6"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.replace("\\\n", " ")
    line = next(ln for ln in cmd.splitlines() if "cl_compress.launch.tune" in ln)
    assert "--strategy packnet --benchmark split_digits" in line and "--trials 6" in line
    monkeypatch.chdir(tmp_path)  # default storage runs/tune/<study>.db, below the cwd
    out = tmp_path / "tuned.yaml"
    rc = tune.main(["--strategy", "packnet", "--benchmark", "split_digits", "--trials", "6",
                    "--sampler-seed", "0", "--out", str(out), "train.steps_per_task=20",
                    "benchmark.backend=native"])
    assert rc == 0
    db = tmp_path / "runs" / "tune" / "packnet-split_digits.db"
    study = optuna.load_study(study_name="packnet-split_digits", storage=f"sqlite:///{db}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 6 and all(0 < t.value <= 1 for t in done)
    for res in (tmp_path / "runs" / "tune" / "packnet-split_digits").rglob("results.json"):
        assert json.loads(res.read_text())["config"]["benchmark"]["eval_split"] == "val"
    preset = yaml.safe_load(out.read_text())
    best = study.best_trial
    assert preset["tuning"]["packnet"]["trials"] == 6
    assert preset["tuning"]["packnet"]["eval_split"] == "val"
    assert f"strategy.prune_ratio={best.params['prune_ratio']!r}" in preset["strategy_overrides"]["packnet"]
    assert preset["overrides"] == ["train.steps_per_task=20", "benchmark.backend=native"]
    loaded = sweep.load_preset(str(out))  # make compare PRESET=<it> accepts it
    jobs, configs, _ = sweep.plan(loaded, ["packnet", "naive"], [0], loaded["benchmarks"], "t",
                                  tmp_path / "sw", [])
    assert "strategy=packnet-tuned,naive" in jobs[0]
    assert f"prune_ratio: {best.params['prune_ratio']!r}" in configs["packnet-tuned"]


def test_multi_objective_reports_the_pareto_front(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "p.yaml"
    rc = tune.main(["--strategy", "packnet", "--benchmark", "synthetic", "--trials", "3",
                    "--objectives", "acc,bits", "--params", "prune_ratio", "--out", str(out),
                    "train.steps_per_task=8", "--dir", str(tmp_path / "d")])
    assert rc == 0
    summary = json.loads((tmp_path / "d" / "tune.json").read_text())
    front = summary["pareto_front"]
    assert front and summary["best"] == front[0] and set(front[0]["values"]) == {"acc", "bits"}
    for a in front:  # no member of the front is dominated by a finished trial
        for b in summary["all"]:
            if b["values"]:
                assert not (b["values"]["acc"] >= a["values"]["acc"]
                            and b["values"]["bits"] <= a["values"]["bits"]
                            and b["values"] != a["values"])


@pytest.mark.slow  # 11 s: two processes; completed-trial counting is tested in-process
def test_two_tune_processes_share_one_sqlite_study(tmp_path):
    db = tmp_path / "shared.db"
    cmd = [sys.executable, "-m", "cl_compress.launch.tune", "--strategy", "packnet", "--benchmark",
           "synthetic", "--trials", "6", "--storage", f"sqlite:///{db}", "--study", "shared",
           "--dir", str(tmp_path / "runs"), "--out", str(tmp_path / "p.yaml"),
           "train.steps_per_task=30"]
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{db}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in done) == list(range(6))  # exactly the study's budget
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, workers  # both processes contributed trials


def test_a_changed_search_space_is_refused_with_the_difference_and_a_new_name(tmp_path, capsys):
    """A second ``make tune`` after the space changed (here: --params) says so in one line and
    names a new study, instead of failing every trial inside Optuna."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    common = ["--strategy", "packnet", "--benchmark", "synthetic", "--storage", db, "--study", "s",
              "--dir", str(tmp_path / "d"), "--out", str(tmp_path / "p.yaml"), "train.steps_per_task=4"]
    assert tune.main([*common, "--trials", "1", "--params", "prune_ratio"]) == 0
    capsys.readouterr()
    assert tune.main([*common, "--trials", "2", "--params", "prune_ratio retrain_lr_scale"]) == 2
    err = capsys.readouterr().err
    assert "was searched over another space" in err and "retrain_lr_scale" in err
    assert "--study s-" in err
    study = optuna.load_study(study_name="s", storage=db)
    assert len(study.trials) == 1  # nothing ran


def test_space_mismatch_of_a_study_without_a_recorded_space(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="old")
    study.optimize(lambda t: t.suggest_float("prune_ratio", 0.1, 0.9), n_trials=1)
    same = tune.Param("prune_ratio", "float", 0.1, 0.9)
    assert tune.space_mismatch(study, [same]) == ""
    other = tune.Param("prune_ratio", "float", 0.01, 0.99)
    assert "trial 0 drew prune_ratio" in tune.space_mismatch(study, [other])


def test_only_completed_trials_count(tmp_path, monkeypatch):
    """A failing trial is replaced: the study ends with --trials completed trials."""
    from cl_compress import train

    calls = {"n": 0}
    real = train.build_and_run

    def flaky(cfg, run_dir, *a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a trial that fails")
        return real(cfg, run_dir, *a, **k)

    monkeypatch.setattr(train, "build_and_run", flaky)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    assert tune.main([
        "--strategy", "packnet", "--benchmark", "synthetic", "--trials", "2", "--params", "prune_ratio",
        "--storage", db, "--study", "c", "--dir", str(tmp_path / "d"), "--out", str(tmp_path / "p.yaml"),
        "train.steps_per_task=4"]) == 0
    states = [t.state.name for t in optuna.load_study(study_name="c", storage=db).trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"], states
    summary = json.loads((tmp_path / "d" / "tune.json").read_text())
    assert summary["complete"] == 2 and summary["failed"] == 1
