"""Tracking: offline W&B run, CSV, figures; secrets never written; failures never fatal."""

import os
from pathlib import Path

import pytest

from cl_compress.testing import run_quick
from cl_compress.tracking import Tracker, TrackerSettings

SECRET = "0123456789abcdef0123456789abcdef01234567"


def _all_text(folder: Path) -> str:
    out = []
    for p in folder.rglob("*"):
        if p.is_file() and p.stat().st_size < 20_000_000:
            out.append(p.read_bytes().decode("latin-1"))
    return "\n".join(out)


def test_offline_wandb_run_without_leaking_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    res = run_quick(run, ["logger=wandb"])
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].rglob("*.wandb"))
    assert (run / "acc_matrix.png").stat().st_size > 1000
    csv_text = (run / "metrics.csv").read_text()
    assert "eval/acc/task_2" in csv_text and "train/loss" in csv_text
    assert res["n_tasks"] == 3
    assert SECRET not in _all_text(run)


def test_wandb_failure_never_kills_the_run(tmp_path, monkeypatch):
    import lightning.pytorch.loggers as loggers

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("wandb exploded")

    monkeypatch.setattr(loggers, "WandbLogger", Broken)
    res = run_quick(tmp_path / "run", ["logger=wandb", "logger.mode=offline"])
    assert res["avg_acc"] > 0.5 and (tmp_path / "run" / "results.json").is_file()


def test_logging_errors_after_start_switch_wandb_off(tmp_path):
    t = Tracker(tmp_path, TrackerSettings(wandb=False), name="x", group="g", config={})

    class Exploding:
        def log(self, payload):
            raise OSError("disk full")

    t._wandb = Exploding()
    t.log_experience(0, {"eval/acc/task_0": 1.0})  # must not raise
    assert t._wandb is None
    t.finish()
    assert "eval/acc/task_0" in (tmp_path / "metrics.csv").read_text()


@pytest.mark.skipif(os.environ.get("WANDB_MODE") == "online", reason="never upload from tests")
def test_mode_defaults_to_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    t = Tracker(tmp_path, TrackerSettings(), name="x", group="g", config={"a": 1})
    try:
        assert t._wandb is not None and t._wandb.settings.mode in ("offline", "dryrun")
        assert t._wandb.offline
    finally:
        t.finish()
