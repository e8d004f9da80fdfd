"""Reliability round 2 (issue 16): resume refuses another run, preemption, non-finite
weights, one run per directory, bad config and data before training, reload, W&B."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_compress.compose import compose_config
from cl_compress.engine.system import NonFiniteLossError
from cl_compress.errors import CheckpointError, ConfigError, DataError
from cl_compress.rundir.finite import NonFiniteWeightsError
from cl_compress.rundir.io import load_torch, save_torch
from cl_compress.rundir.lock import RunDirBusy, RunLock
from cl_compress.testing import run_quick
from cl_compress.train import build_and_run

REPO = Path(__file__).resolve().parents[1]
ONE = ["train.epochs=1"]
CLI = [sys.executable, "-m", "cl_compress.train", "benchmark=synthetic", "logger=none",
       "trainer.progress_bar=false", "train.epochs=1", "train.steps_per_task=null",
       "train.batch_size=32"]
ENV = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")


def _finite(obj) -> bool:
    from cl_compress.rundir.finite import first_nonfinite

    return first_nonfinite(obj) is None


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-task naive run (1 epoch) and its checkpoint bytes."""
    run = tmp_path_factory.mktemp("finished")
    res = run_quick(run, ONE)
    return run, res


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("checkpoint.pt", "results.json", "metrics.csv"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


# --- 1. resume refuses a different run -----------------------------------------------

@pytest.mark.parametrize("override, key", [
    ("benchmark.seed=1", "benchmark.seed"),
    ("model.hidden=[64,64]", "model.hidden"),
    ("train.lr=0.01", "train.lr"),
    ("train.batch_size=16", "train.batch_size"),
    ("benchmark.class_order=[1,0,2,3,4,5]", "benchmark.class_order"),
    ("strategy=packnet", "strategy.name"),
    ("benchmark.n_tasks=2", "benchmark.n_tasks"),
])
def test_resume_refuses_a_different_config_naming_the_key(finished, tmp_path, override, key):
    run = _copy_run(finished[0], tmp_path / "r")
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match=rf"different run.*{key} \(checkpoint: "):
        run_quick(run, ONE + ["resume=true", override])
    assert (run / "checkpoint.pt").read_bytes() == before


def test_resume_names_every_differing_key_and_ignores_logging_keys(finished, tmp_path):
    run = _copy_run(finished[0], tmp_path / "r")
    with pytest.raises(CheckpointError) as e:
        run_quick(run, ONE + ["resume=true", "seed=0", "train.momentum=0.5", "model.hidden=[8]"])
    msg = str(e.value)
    assert "train.momentum" in msg and "model.hidden" in msg and "\n" not in msg
    # output/logging keys may change: progress bar, logger, overwrite
    res = run_quick(run, ONE + ["resume=true", "trainer.progress_bar=true", "logger.project=x"])
    assert res["acc_matrix"] == finished[1]["acc_matrix"]


def _tampered(finished, tmp_path, edit) -> Path:
    run = _copy_run(finished[0], tmp_path / "t")
    ck = load_torch(run / "checkpoint.pt")
    edit(ck)
    save_torch(run / "checkpoint.pt", ck)
    return run


@pytest.mark.parametrize("edit, message", [
    (lambda ck: ck.update(next_task=2), r"next_task=2 but the accuracy matrix has row lengths \[1, 2, 3\]"),
    (lambda ck: ck.update(next_task=5), r"next_task=5, n_tasks=3"),
    (lambda ck: ck.update(acc_matrix=[[1.0], [1.0, 0.5]], next_task=3), "row lengths"),
    (lambda ck: ck.pop("config"), "lacks config"),
    (lambda ck: ck["model"].update({"body.1.weight": torch.zeros(64, 64)}), "does not fit the model"),
    (lambda ck: ck["model"].pop("heads.0.bias"), "does not fit the model"),
])
def test_inconsistent_checkpoint_is_refused(finished, tmp_path, edit, message):
    run = _tampered(finished, tmp_path, edit)
    with pytest.raises(CheckpointError, match=message):
        run_quick(run, ONE + ["resume=true"])


def test_checkpoint_stores_the_training_config(finished):
    cfg = load_torch(finished[0] / "checkpoint.pt")["config"]
    assert cfg["train"]["epochs"] == 1 and cfg["model"]["hidden"] == [256, 256]
    assert "logger" not in cfg and "resume" not in cfg and "progress_bar" not in cfg["trainer"]


# --- 2. preemption ---------------------------------------------------------------------

SLOW_TASKS = textwrap.dedent("""
    import sys, time
    from cl_compress.engine import system

    step = system.ContinualSystem.training_step

    def slow(self, batch, i):  # task 0 at full speed, later tasks slow: SIGTERM lands in fit
        if self.task >= 1:
            time.sleep(2.0)
        return step(self, batch, i)

    system.ContinualSystem.training_step = slow
    from cl_compress.train import main
    sys.argv = ["train", *sys.argv[1:]]
    main()
""")


@pytest.mark.slow  # 20 s: real signals to a CLI run (and its resume)
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)])
def test_signal_stops_with_message_and_resume_completes(tmp_path, sig):
    run = tmp_path / "run"
    args = CLI[3:] + [f"hydra.run.dir={run}"]
    p = subprocess.Popen([sys.executable, "-c", SLOW_TASKS, *args], cwd=REPO, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run / "checkpoint.pt").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()[1][-2000:]
    time.sleep(0.5)  # inside task 1's fit
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err[-2000:]
    line = [x for x in err.splitlines() if x.startswith("error: ")][-1]
    assert f"stopped by {signal.Signals(sig).name}" in line and "keeps task 0 (next_task=1)" in line
    assert "resume=true" in line and str(run) in line
    assert not (run / "results.json").exists()
    assert load_torch(run / "checkpoint.pt")["next_task"] == 1
    done = subprocess.run(CLI + [f"hydra.run.dir={run}", "resume=auto"], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads((run / "results.json").read_text())["acc_matrix"]) == 3


def test_resume_auto_starts_when_there_is_no_checkpoint(tmp_path):
    res = run_quick(tmp_path / "r", ONE + ["resume=auto"])
    assert len(res["acc_matrix"]) == 3


# --- 3. non-finite weights -------------------------------------------------------------

# train.lr=inf (or beyond float32) is refused before training (tests/test_budget.py); to reach
# weights that turn non-finite while the loss stays finite, a step writes inf into a weight
POISON_STEP = textwrap.dedent("""
    import sys
    import torch
    from cl_compress.engine import system

    step = system.ContinualSystem.training_step

    def poisoned(self, batch, i):  # the optimiser step lands the weights on inf
        out = step(self, batch, i)
        with torch.no_grad():
            next(self.model.parameters()).fill_(float("inf"))
        return out

    system.ContinualSystem.training_step = poisoned
""")


def test_individual_with_nonfinite_weights_stops_and_writes_nothing_nonfinite(tmp_path, monkeypatch):
    from cl_compress.engine import system

    # register the original with monkeypatch first, so that it is restored after the test
    monkeypatch.setattr(system.ContinualSystem, "training_step", system.ContinualSystem.training_step)
    exec(POISON_STEP, {})  # noqa: S102 - patches ContinualSystem.training_step in this process
    run = tmp_path / "inf"
    with pytest.raises(NonFiniteWeightsError, match="non-finite during task 0.*no task had finished"):
        run_quick(run, ONE + ["strategy=individual", "train.batch_size=128"])
    assert not (run / "checkpoint.pt").exists() and not (run / "model_artifact.pt").exists()
    assert not (run / "results.json").exists()


def test_divergence_after_a_good_task_names_a_finite_checkpoint(tmp_path):
    run = tmp_path / "div"

    def blow_up(t, model, strategy):  # from task 1 on, an infinite learning rate
        strategy.train.lr = float("inf")

    with pytest.raises(NonFiniteLossError, match=r"keeps task 0 \(next_task=1\)") as e:
        run_quick(run, ONE + ["strategy=individual", "train.batch_size=128"], on_task_end=blow_up)
    assert "\n" not in str(e.value)
    ck = load_torch(run / "checkpoint.pt")
    assert ck["next_task"] == 1 and _finite(ck["model"]) and _finite(ck["strategy"])
    res = run_quick(run, ONE + ["strategy=individual", "train.batch_size=128", "resume=true"])
    assert len(res["acc_matrix"]) == 3 and _finite(load_torch(run / "model_artifact.pt"))


def test_divergence_inside_ada_search_names_the_kept_checkpoint(tmp_path):
    """A search candidate (TaskData.fit, outside the phases) that diverges stops the run with
    the same guidance as a phase: what is kept and what to change."""
    run = tmp_path / "ada"

    def blow_up(t, model, strategy):  # from task 1 on, candidates fine-tune at an infinite lr
        strategy.cfg.retrain_lr_scale = float("inf")

    with pytest.raises(NonFiniteLossError, match=r"keeps task 0 \(next_task=1\).*lower the"):
        run_quick(run, ONE + ["strategy=ada_qpacknet", "strategy.population=1", "strategy.search_epochs=3",
                              "strategy.retrain_epochs=0", "train.batch_size=128"],
                  on_task_end=blow_up)
    assert load_torch(run / "checkpoint.pt")["next_task"] == 1


def test_save_torch_refuses_nonfinite_tensors(tmp_path):
    with pytest.raises(NonFiniteWeightsError, match=r"w has 1 of 2 values"):
        save_torch(tmp_path / "x.pt", {"w": torch.tensor([1.0, float("nan")])})
    assert not (tmp_path / "x.pt").exists() and not list(tmp_path.iterdir())


@pytest.mark.slow  # 10 s: a CLI run; divergence is tested in-process
def test_cli_nonfinite_exits_nonzero_with_one_line(tmp_path):
    script = POISON_STEP + "from cl_compress.train import main\nsys.argv[0] = 'train'\nmain()\n"
    p = subprocess.run([sys.executable, "-c", script, *CLI[3:], "strategy=individual",
                        "train.batch_size=128", f"hydra.run.dir={tmp_path / 'r'}"], cwd=REPO,
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "error: weights became non-finite" in p.stderr
    assert not (tmp_path / "r" / "results.json").exists()


# --- 4. one run per directory ----------------------------------------------------------

def test_second_run_into_a_locked_directory_fails_at_once(tmp_path):
    run = tmp_path / "busy"
    with RunLock(run):
        t0 = time.perf_counter()
        with pytest.raises(RunDirBusy, match=f"{run} is in use by another run \\(pid {os.getpid()}\\)"):
            run_quick(run, ONE)
        assert time.perf_counter() - t0 < 5
    assert not (run / "metrics.csv").exists()
    run_quick(run, ONE)  # lock released: the directory is usable again


def test_lock_is_exclusive_across_processes(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from cl_compress.rundir.lock import RunLock
        with RunLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusy, match=f"pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path).acquire().release()  # the kernel dropped the dead holder's lock


def test_fresh_run_into_a_finished_run_refuses_unless_overwrite(finished, tmp_path):
    run = _copy_run(finished[0], tmp_path / "r")
    before = (run / "results.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a finished run.*overwrite=true"):
        run_quick(run, ONE)
    assert (run / "results.json").read_bytes() == before
    (run / "results.json").unlink()
    with pytest.raises(ConfigError, match="an unfinished run.*resume=true"):
        run_quick(run, ONE)
    res = run_quick(run, ONE + ["overwrite=true", "seed=1"])
    assert json.loads((run / "results.json").read_text())["seed"] == 1 == res["seed"]


def test_orphan_tmp_files_are_removed_on_start(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    orphan = run / ".checkpoint.pt.abc123.tmp"
    orphan.write_bytes(b"half")
    keep = run / ".unrelated.tmp"
    keep.write_bytes(b"user file")
    run_quick(run, ONE)
    assert not orphan.exists() and keep.exists()


# --- 5. config and data validated before training ------------------------------------

@pytest.mark.parametrize("override, message", [
    ("seed=1.5", r"seed=1.5 must be an integer"),
    ("seed=-5", r"seed=-5 must be an integer in \[0, "),
    ("benchmark.seed=-1", r"benchmark.seed=-1 must be an integer"),
    ("train.lr=abc", r"train.lr='abc' must be a number"),
    ("train.lr=nan", r"train.lr=nan must be a number"),
    ("train.epochs=1.5", r"train.epochs=1.5 must be an integer"),
    ("train.steps_per_task=2.5", r"train.steps_per_task=2.5 must be an integer"),
    ("train.lr=-1", r"train.lr=-1 must be a number > 0"),
    ("train.momentum=fast", r"train.momentum='fast' must be a number"),
    ("model.hidden=[0]", r"model.hidden=\[0\] must be a list of integers >= 1"),
    ("model.hidden=[64,-1]", r"model.hidden"),
    ("model=cnn model.channels=[0,8]", r"model.channels"),
    ("+model.depth=3", r"unknown key\(s\) model.depth"),
    ("trainer.devices=0", r"trainer.devices=0 must be"),
    ("+train.foo=1", r"unknown key\(s\) train.foo; valid train keys: .*batch_size"),
    ("+trainer.foo=1", r"unknown key\(s\) trainer.foo"),
    ("+benchmark.foo=1", r"unknown key\(s\) benchmark.foo"),
    ("+foo=1", r"unknown top-level key\(s\) foo"),
    ("logger.mode=ofline", r"logger.mode='ofline'; choose one of: online, offline, disabled"),
    ("resume=maybe", r"resume='maybe' must be true, false or auto"),
    ("benchmark.data_root=''", r"benchmark.data_root is empty"),
])
def test_bad_config_fails_before_anything_runs(tmp_path, override, message):
    run = tmp_path / "r"
    with pytest.raises(ConfigError, match=message):
        build_and_run(compose_config(["benchmark=synthetic", "logger=none", *override.split()]), run)
    assert not run.exists()  # validated before the run directory is even locked


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without CUDA")
def test_gpu_accelerator_without_cuda_is_a_config_error(tmp_path):
    for acc in ("gpu", "cuda"):
        with pytest.raises(ConfigError, match=f"trainer.accelerator={acc} but no CUDA device"):
            build_and_run(compose_config(["benchmark=synthetic", f"trainer.accelerator={acc}"]), tmp_path)


def _idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def _fake_fmnist(root: Path, test_side: int = 28, n_labels: int = 10) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for split, n, side in (("train", 200, 28), ("t10k", 100, test_side)):
        _idx(root / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, side, side)))
        _idx(root / f"{split}-labels-idx1-ubyte", np.arange(n) % n_labels)
    return root


@pytest.mark.parametrize("kw, message", [
    ({"test_side": 32},
     r"task 0 test images have shape \(1, 32, 32\), but the stream's images are \(1, 28, 28\)"),
    ({"n_labels": 5}, r"task 0 has 1 class\(es\) in its training data.*at least 2"),
])
def test_bad_data_is_refused_when_the_stream_is_built(tmp_path, kw, message):
    root = _fake_fmnist(tmp_path / "data", **kw)
    run = tmp_path / "r"
    with pytest.raises(DataError, match=message):
        run_quick(run, ONE + ["benchmark=split_fmnist", "benchmark.backend=native",
                              f"benchmark.data_root={root}"])
    assert not (run / "metrics.csv").exists() and not (run / "checkpoint.pt").exists()


def test_cli_config_errors_are_one_line_before_training(tmp_path):
    for override, message in {"seed=1.5": "error: seed=1.5 must be an integer",
                              "model.hidden=[0]": "error: model.hidden=[0] must be"}.items():
        p = subprocess.run(CLI + [override, f"hydra.run.dir={tmp_path / 'x'}"], cwd=REPO, env=ENV,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 2 and message in p.stderr, p.stderr[-1500:]
        assert "Traceback" not in p.stderr and not (tmp_path / "x" / "metrics.csv").exists()


# --- 7. W&B ----------------------------------------------------------------------------

def test_wandb_online_without_key_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for overrides in (["logger=wandb", "logger.mode=online"], ["logger=wandb"]):
        if overrides == ["logger=wandb"]:
            monkeypatch.setenv("WANDB_MODE", "online")
        with pytest.raises(ConfigError, match="online but no API key.*logger.mode=offline"):
            build_and_run(compose_config(["benchmark=synthetic", *overrides]), tmp_path / "r")
    monkeypatch.setenv("WANDB_MODE", "ofline")
    with pytest.raises(ConfigError, match="WANDB_MODE='ofline'"):
        build_and_run(compose_config(["benchmark=synthetic", "logger=wandb"]), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_wandb_online_with_netrc_key_is_accepted(tmp_path, monkeypatch):
    from cl_compress.settings.validate import check_logger

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    check_logger({"wandb": True, "mode": "online"})  # no error: W&B will not prompt


def _csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def test_resume_keeps_one_metrics_history_and_the_wandb_run_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "r"

    def crash(t, model, strategy):
        if t == 1:
            raise RuntimeError("simulated crash after task 1")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_quick(run, ONE + ["logger=wandb"], on_task_end=crash)
    run_id = (run / "wandb_run_id").read_text().strip()
    with open(run / "metrics.csv", "a", newline="") as f:  # rows of the interrupted task 2
        csv.writer(f).writerows([["1.0", "", "3", "train/loss", "9.9"], ["1.0", "2", "", "junk", "1"]])
    run_quick(run, ONE + ["logger=wandb", "resume=true"])
    rows = _csv_rows(run / "metrics.csv")
    assert not any(r[3] == "junk" or r[4] == "9.9" for r in rows)
    exp_keys = [(r[1], r[3]) for r in rows if r[1] != ""]
    assert len(exp_keys) == len(set(exp_keys)) and ("2", "eval/acc/task_2") in exp_keys
    epochs = [int(r[2]) for r in rows if r[2] != ""]
    assert epochs == sorted(epochs) and len(set(epochs)) == 3  # 3 tasks x 1 epoch, continued
    assert (run / "wandb_run_id").read_text().strip() == run_id
    runs = list((run / "wandb").glob("offline-run-*"))
    # one id across both sessions; W&B adds "-1" to the folder of a second session that
    # starts within the same second as the first (offline-run-<time>-<id>-1)
    assert runs and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", p.name)
                        for p in runs), [p.name for p in runs]


# --- 6. reload -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ada_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ada")
    res = run_quick(run, ONE + ["strategy=ada_qpacknet", "strategy.population=2",
                                "strategy.search_epochs=1"])
    return run, res


def _reload(*args):
    return subprocess.run([sys.executable, "-m", "cl_compress.evaluate_artifact", *map(str, args)], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=300)


def test_reload_takes_a_run_directory_and_refuses_another_stream(ada_run, tmp_path):
    from cl_compress.evaluate_artifact import evaluate_run

    def accuracy_row(path, overrides):
        return evaluate_run(path, overrides)["acc_row"]

    run, res = ada_run
    assert accuracy_row(str(run), []) == res["acc_matrix"][-1]
    with pytest.raises(ConfigError, match=r"benchmark.seed=1 \(the run used 0\)"):
        accuracy_row(str(run), ["benchmark.seed=1"])
    with pytest.raises(ConfigError, match=r"model.hidden"):
        accuracy_row(str(run / "model_artifact.pt"), ["model.hidden=[64,64]"])
    p = _reload(run, "benchmark.seed=1")
    assert p.returncode == 2 and p.stderr.strip().startswith("error: these overrides differ")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_reload_reports_a_tampered_artifact_in_one_line(ada_run, tmp_path, capsys):
    import pickle

    from cl_compress.evaluate_artifact import main

    def reload_rc(*argv) -> tuple[int, list[str]]:
        rc = main([str(a) for a in argv])
        return rc, capsys.readouterr().err.strip().splitlines()

    run = tmp_path / "copy"
    run.mkdir()
    (run / "results.json").write_bytes((ada_run[0] / "results.json").read_bytes())
    good = (ada_run[0] / "model_artifact.pt").read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for tampered in (pickle.dumps(_Evil()), good[: len(good) // 2], bytes(flipped)):
        (run / "model_artifact.pt").write_bytes(tampered)
        rc, err = reload_rc(run)
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "does not match" in err[0]
    # without the run's results.json: the file itself is refused (weights_only, zip checks)
    (run / "results.json").unlink()
    for tampered in (pickle.dumps(_Evil()), good[: len(good) // 2]):
        (run / "model_artifact.pt").write_bytes(tampered)
        rc, err = reload_rc(run, "benchmark=synthetic", "strategy=ada_qpacknet")
        assert rc == 2 and err[-1].startswith("error: ") and "corrupt or unreadable" in err[-1], err
        assert len(err) == 2 and err[0].startswith("warning: no results.json")
    (run / "model_artifact.pt").unlink()
    (run / "model_artifact.pt").mkdir()
    rc, err = reload_rc(run / "model_artifact.pt")
    inner = run / "model_artifact.pt" / "model_artifact.pt"
    assert rc == 2 and err == [f"error: no model artifact at {inner}"]
    # the command line: one line, no traceback, status 2
    (run / "model_artifact.pt").rmdir()
    (run / "model_artifact.pt").write_bytes(pickle.dumps(_Evil()))
    p = _reload(run / "model_artifact.pt", "benchmark=synthetic", "strategy=ada_qpacknet")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "pwned" not in p.stdout
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")


# --- 8. disk-level write failures --------------------------------------------------------

def test_disk_full_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno

    from cl_compress.rundir import io

    target = tmp_path / "checkpoint.pt"
    save_torch(target, {"w": torch.ones(2)})
    before = target.read_bytes()

    def full(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.torch, "save", full)
    with pytest.raises(io.OutputError, match="cannot write .*checkpoint.pt: no space left on the device"):
        save_torch(target, {"w": torch.zeros(2)})

    def torch_full(obj, f):  # what torch.save really raises when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed "
                           "writing file data/0: file write failed")

    class Stat:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(io.torch, "save", torch_full)
    monkeypatch.setattr(io.os, "statvfs", lambda p: Stat())
    with pytest.raises(io.OutputError, match="no space left on the device"):
        save_torch(target, {"w": torch.zeros(2)})
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_signal_before_any_task_finished_says_so_and_restores_handlers(tmp_path):
    from cl_compress.rundir.preempt import Preempted, stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted) as e, stop_on_signals(tmp_path):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert e.value.exit_code == 143
    assert str(e.value) == (f"stopped by SIGTERM; no task had finished, so no checkpoint was written; "
                            f"to start again, rerun the same command (resume=auto also works) "
                            f"hydra.run.dir={tmp_path}")
    assert signal.getsignal(signal.SIGTERM) is before


def test_refused_run_leaves_the_directory_runs_status_alone(tmp_path):
    """A second, refused run into a finished run's directory must not mark that run failed
    (sweeps count status.json)."""
    from cl_compress.testing import QUICK
    from cl_compress.train import run_job

    c = compose_config(QUICK + ONE)
    assert run_job(c, tmp_path) is not None
    before = (tmp_path / "status.json").read_text()
    assert json.loads(before)["state"] == "done"
    with pytest.raises(SystemExit) as e:
        run_job(c, tmp_path)  # fresh run, no overwrite=true: refused
    assert e.value.code == 2
    assert (tmp_path / "status.json").read_text() == before
    assert (tmp_path / "results.json").exists()
