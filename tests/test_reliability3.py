"""Reliability round 3 (issue 27): no code from data files, no silent stale sweeps, DDP that
stops on a signal, nothing of the user's lost, one-line errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cl_compress.testing import run_quick

REPO = Path(__file__).resolve().parents[1]
ONE = ["train.epochs=1"]
ENV = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1",
           PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-task naive run (1 epoch)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    res = run_quick(run, ONE)
    return run, res


def _py(args, cwd=None, timeout=120, env=None):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env or ENV, capture_output=True,
                          text=True, timeout=timeout)


# --- 1. names from data files never import a path ------------------------------------

EVIL = """from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("ran")
from cl_compress.strategies.naive import Naive as Evil
"""


def _planted_sweep(finished, tmp_path) -> Path:
    src, _ = finished
    sweep = tmp_path / "exchanged"
    run = sweep / "run0"
    shutil.copytree(src, run)
    res = json.loads((run / "results.json").read_text())
    res["strategy"] = "evil_mod:Evil"
    res["config"]["strategy"]["name"] = "evil_mod:Evil"
    (run / "results.json").write_text(json.dumps(res))
    (sweep / "evil_mod.py").write_text(EVIL)
    return sweep


def test_report_on_unregistered_module_attr_imports_nothing(finished, tmp_path):
    sweep = _planted_sweep(finished, tmp_path)
    p = _py(["-m", "cl_compress.report", str(sweep), "--out", str(tmp_path / "out")], cwd=sweep)
    assert not (sweep / "IMPORTED").exists(), "the report imported a module named in results.json"
    assert p.returncode == 0, p.stderr[-2000:]
    assert "evil_mod:Evil" in (tmp_path / "out" / "report.md").read_text()


def test_evaluate_artifact_on_unregistered_module_attr_imports_nothing(finished, tmp_path):
    sweep = _planted_sweep(finished, tmp_path)
    p = _py(["-m", "cl_compress.evaluate_artifact", str(sweep / "run0")], cwd=sweep)
    assert not (sweep / "IMPORTED").exists(), "evaluate_artifact imported a module from results.json"
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "--allow-import" in err[0] and "evil_mod:Evil" in err[0], p.stderr
    # the explicit override imports it (and the run is reproduced)
    p = _py(["-m", "cl_compress.evaluate_artifact", "--allow-import", str(sweep / "run0")], cwd=sweep)
    assert (sweep / "IMPORTED").exists()
    assert p.returncode == 0, p.stderr[-2000:]


def test_resolve_registered_never_imports(tmp_path, monkeypatch):
    from cl_compress.errors import ConfigError
    from cl_compress.strategies.registry import resolve_registered

    (tmp_path / "evil_mod2.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="never imported"):
        resolve_registered("evil_mod2:Evil")
    assert not (tmp_path / "IMPORTED").exists()
    assert resolve_registered("naive").name == "naive"
