"""Typos on the command line: one line with a suggestion, before Hydra is imported."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cl_compress.settings.suggest import check_argv

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv,line", [
    (["strategy=lrpt"], "unknown strategy 'lrpt'; did you mean lrpet?"),
    (["benchmark=split_fmnst"], "unknown benchmark 'split_fmnst'; did you mean split_fmnist?"),
    (["model=mpl"], "unknown model 'mpl'; did you mean mlp?"),
    (["strategy=naive,packnt"], "unknown strategy 'packnt'; did you mean packnet?"),
    (["strategy=lrpet", "strategy.rnak=4"], "strategy 'lrpet' has no setting 'rnak' (strategy.rnak); "
                                           "did you mean rank?"),
    (["strategy.prune_ratoi=0.3", "strategy=packnet"], "did you mean prune_ratio?"),
    (["train.lrr=0.1"], "section 'train' has no setting 'lrr' (train.lrr); did you mean lr?"),
    (["benchmark.n_task=3"], "benchmark 'split_fmnist' has no setting 'n_task'"),
    (["sed=3"], "unknown setting 'sed'; did you mean seed?"),
])
def test_typos_get_one_line_with_a_suggestion(argv, line):
    msg = check_argv(argv)
    assert msg is not None and line in msg and "\n" not in msg


def test_known_choices_and_hydra_syntax_pass():
    assert check_argv(["strategy=packnet", "strategy.prune_ratio=0.5", "benchmark=synthetic",
                       "benchmark.scenario=class", "train.lr=0.1", "seed=3", "+strategy.x=1",
                       "hydra.run.dir=/tmp/x", "-m", "trainer=gpu", "hydra/launcher=joblib",
                       "logger.mode=offline",
                       "eval.refit_steps=5", "model=cnn", "model.channels=[8]"]) is None


def test_cli_typo_is_one_line_and_leaves_nothing(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-m", "cl_compress.train", "strategy=lrpt",
                        f"hydra.run.dir={tmp_path / 'x'}"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == [p.stderr.strip()] and "did you mean lrpet" in p.stderr
    assert not (tmp_path / "x").exists()


def test_options_in_a_sweeps_generated_configs_are_known(tmp_path):
    (tmp_path / "strategy").mkdir()
    (tmp_path / "strategy" / "lrpet-truncate.yaml").write_text("defaults:\n  - lrpet\nmode: truncate\n")
    search = f"hydra.searchpath=['file://{tmp_path}']"
    assert check_argv(["-m", "strategy=naive,lrpet-truncate", search]) is None
    assert "did you mean lrpet-truncate" in check_argv(["strategy=lrpet-trunc", search])
    assert check_argv(["strategy=lrpet-truncate"]).startswith("unknown strategy")
