"""Training budgets counted in optimiser steps, LR schedules, and the work each run records."""

import math

import lightning as L
import pytest
import torch

from cl_compress.benchmarks import make_loader
from cl_compress.engine.loop import TrainerSettings, make_trainer
from cl_compress.engine.system import ContinualSystem
from cl_compress.errors import ConfigError
from cl_compress.launch.sweep import shipped_presets
from cl_compress.models import ContinualModel, build_backbone
from cl_compress.strategies import Phase, get_strategy
from cl_compress.strategies.base import TrainSettings, allocate_steps, lr_factor
from cl_compress.testing import run_quick


def test_allocate_steps_splits_by_epochs_and_sums_exactly():
    phases = [Phase(name="train", epochs=2), Phase(name="retrain", epochs=1)]
    out = allocate_steps(phases, 100)
    assert [p.steps for p in out] == [67, 33]
    assert [p.steps for p in allocate_steps(phases, 7)] == [5, 2]
    assert [p.steps for p in allocate_steps([Phase(epochs=3)], 11)] == [11]
    with pytest.raises(ConfigError, match="steps_per_task=1"):
        allocate_steps(phases, 1)


def test_lr_factor_schedules():
    # multistep at 50 % and 75 % of 100 steps
    f = [lr_factor(s, 100, "multistep", [0.5, 0.75], 0.1, 0) for s in (0, 49, 50, 74, 75, 99)]
    assert f == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    # cosine: 1 at the start, 0.5 half way, ~0 at the end; warm-up ramps first
    assert lr_factor(0, 100, "cosine", [], 0.1, 0) == pytest.approx(1.0)
    assert lr_factor(50, 100, "cosine", [], 0.1, 0) == pytest.approx(0.5)
    assert lr_factor(100, 100, "cosine", [], 0.1, 0) == pytest.approx(0.0, abs=1e-12)
    assert [lr_factor(s, 100, "none", [], 0.1, 4) for s in range(5)] == [0.25, 0.5, 0.75, 1, 1]


def _fit(phase: Phase, n: int = 200, batch: int = 32) -> tuple[ContinualSystem, L.Trainer]:
    torch.manual_seed(0)
    body, feat = build_backbone("mlp", (1, 4, 4), hidden=[8])
    model = ContinualModel(body, feat, [2], multi_head=True)
    strat = get_strategy("naive").from_config({}, TrainSettings())
    strat.setup(model, None)
    system = ContinualSystem(model, strat)
    system.set_phase(0, phase)
    x, y = torch.randn(n, 1, 4, 4), torch.randint(0, 2, (n,))
    trainer = make_trainer(TrainerSettings(progress_bar=False), phase.epochs, phase.steps)
    trainer.fit(system, make_loader(x, y, 0, batch, shuffle=True, seed=0))
    return system, trainer


def test_phase_runs_exact_steps_across_epochs_and_schedule_is_applied():
    # 200 samples / 32 = 7 batches per epoch: 17 steps = 2 full epochs and 3 batches
    phase = Phase(lr=0.01, steps=17, scheduler="multistep", milestones=[0.5], gamma=0.1)
    system, trainer = _fit(phase)
    assert system.phase_steps == 17 == trainer.global_step
    assert system.phase_samples == 2 * 200 + 3 * 32
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.001)
    # without a schedule the lr is untouched; epochs mode runs whole epochs
    system, trainer = _fit(Phase(lr=0.01, epochs=2))
    assert system.phase_steps == 14 and system.phase_samples == 400
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01)
    # cosine ends near zero
    system, trainer = _fit(Phase(lr=0.01, steps=10, scheduler="cosine"))
    assert trainer.optimizers[0].param_groups[0]["lr"] < 0.01 * 0.05


def test_results_record_budget_in_steps_for_multi_phase_strategy(tmp_path):
    res = run_quick(tmp_path, ["strategy=packnet", "train.steps_per_task=30",
                               "strategy.retrain_epochs=1", "train.epochs=null"])
    b = res["budget"]
    assert b["mode"] == "steps" and b["steps_per_task"] == 30
    assert b["train_steps_per_task"] == [30, 30, 30] and b["train_steps"] == 90
    for task in b["per_task"][:-1]:  # the last task is not pruned: one phase
        assert task["phases"]["train"]["steps"] == 20 and task["phases"]["retrain"]["steps"] == 10
    assert list(b["per_task"][-1]["phases"]) == ["train"]
    assert b["samples_seen"] == sum(t["samples_seen"] for t in b["per_task"]) > 0
    assert b["train_epochs"] > 0 and b["extra_steps"] == {}
    assert len(res["acc_before_compression"]) == 3
    assert all(0 <= a <= 1 for a in res["acc_before_compression"])


def test_epoch_budget_is_recorded_as_done(tmp_path):
    res = run_quick(tmp_path, ["strategy=naive", "train.epochs=2"])
    b = res["budget"]
    assert b["mode"] == "epochs" and b["steps_per_task"] is None
    assert all(t["phases"]["train"]["epochs"] == pytest.approx(2.0) for t in b["per_task"])
    per_epoch = [t["train_steps"] / 2 for t in b["per_task"]]
    assert all(s == int(s) and s > 0 for s in per_epoch)


@pytest.mark.slow  # 18 s: a full Ada-QPacknet search; the kit checks every strategy's step budget
def test_search_steps_are_counted_apart(tmp_path):
    res = run_quick(tmp_path, ["strategy=ada_qpacknet", "strategy.population=2",
                               "strategy.search_epochs=1", "train.steps_per_task=20",
                               "train.epochs=null"])
    b = res["budget"]
    assert b["train_steps_per_task"] == [20, 20, 20]
    search = [t["extra_steps"].get("search", 0) for t in b["per_task"]]
    # population x search_epochs x batches of the (90 %) training split, for pruned tasks
    assert search[0] > 0 and search[0] % 2 == 0
    assert b["extra_steps"]["search"] == sum(search)


@pytest.mark.parametrize("override, match", [
    ("train.steps_per_task=0", "train.steps_per_task"),
    ("train.scheduler=step", "train.scheduler"),
    ("train.milestones=[0.8,0.5]", "train.milestones"),
    ("train.gamma=0", "train.gamma"),
    ("train.lr=inf", "train.lr"),
    ("train.lr=1e39", "train.lr"),  # overflows float32 inside the optimiser step
])
def test_bad_budget_settings_fail_before_training(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        run_quick(tmp_path, [override])
    assert not (tmp_path / "checkpoint.pt").exists()


def test_lr_factor_is_finite_everywhere():
    for sched in ("none", "multistep", "cosine"):
        for s in range(0, 120):
            assert math.isfinite(lr_factor(s, 100, sched, [0.5], 0.1, 5))


def _preset(tmp_path, **extra):
    import yaml

    data = {"description": "t", "target": "t", "benchmarks": ["synthetic"],
            "strategies": ["naive", "packnet"], "seeds": [0],
            "overrides": ["logger=none", "train.epochs=1", "train.steps_per_task=null"], **extra}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_sweep_refuses_epoch_budgets_unless_the_preset_names_the_difference(tmp_path, capsys):
    from cl_compress.launch import sweep

    assert sweep.main(["--preset", _preset(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "train.steps_per_task=N" in err and "budget_exceptions" in err
    # naming one strategy (e.g. Ada-QPacknet's search) does not unlock epochs for all of them
    one = _preset(tmp_path, budget_exceptions={"packnet": "retrain phase on purpose"})
    assert sweep.main(["--preset", one, "--dry-run"]) == 2
    assert "budget_exceptions" in capsys.readouterr().err
    named = _preset(tmp_path, budget_exceptions={"*": "epochs on purpose, to match a paper"})
    assert sweep.main(["--preset", named, "--dry-run"]) == 0
    steps = _preset(tmp_path, overrides=["logger=none", "train.steps_per_task=20"])
    assert sweep.main(["--preset", steps, "--dry-run"]) == 0
    # a swept value is checked value by value, one line on error, no traceback
    assert sweep.main(["--preset", steps, "--dry-run", "train.lr=0.001,0.01"]) == 0
    assert sweep.main(["--preset", steps, "--dry-run", "train.steps_per_task=20,null"]) == 2
    assert "train.steps_per_task=N" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(shipped_presets()))
def test_every_preset_plans_with_an_equal_step_budget(name, capsys):
    """Every committed preset validates (strategy configs, budget in steps or named exceptions)
    and plans its multiruns; --dry-run runs nothing."""
    from cl_compress.launch import sweep

    assert sweep.main(["--preset", name, "--dry-run"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "train.steps_per_task=" in out


def test_per_task_ratio_of_individual_is_one_at_every_task(tmp_path):
    """compress/ratio_vs_individual after task t divides by t + 1 individual models, so the
    individual baseline itself reads 1.0 at every task (it read 3.0 -> 1.5 -> 1.0 before)."""
    import csv

    run_quick(tmp_path, ["strategy=individual"])
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    ratios = [float(r["value"]) for r in rows if r["key"] == "compress/ratio_vs_individual"]
    assert ratios == pytest.approx([1.0, 1.0, 1.0])
    run_quick(tmp_path / "naive", ["strategy=naive"])
    rows = list(csv.DictReader(open(tmp_path / "naive" / "metrics.csv")))
    ratios = [float(r["value"]) for r in rows if r["key"] == "compress/ratio_vs_individual"]
    assert ratios[0] < ratios[1] < ratios[2]  # one shared body against t + 1 models
