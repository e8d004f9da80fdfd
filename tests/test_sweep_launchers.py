"""Sweeps through Hydra launchers (issue 15): the local default (joblib) and submitit's local
executor (the SLURM code path) run a small sweep end to end, one run per directory, with the
report; a failing run is isolated and listed; a sweep killed half-way and started again with
the same command finishes only the missing runs; progress is in sweep.json."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cl_compress.launch import sweep

REPO = Path(__file__).resolve().parents[1]


def _preset(path: Path, **kw) -> Path:
    data = {"description": "test", "target": "test", "benchmarks": ["synthetic"],
            "overrides": ["logger=none", "train.steps_per_task=12", "train.batch_size=32"], **kw}
    path.write_text(yaml.safe_dump(data))
    return path


def _env() -> dict:
    return dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")


def _sweep(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cl_compress.launch.sweep", "--poll", "0.5", *args],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def _results(d: Path) -> dict[str, float]:
    """``{run dir relative to d: mtime of its results.json}``."""
    return {p.parent.relative_to(d).as_posix(): p.stat().st_mtime_ns for p in d.rglob("results.json")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_make_compare_passes_launcher_parallel_and_dir():
    out = subprocess.run(["make", "-n", "compare", "LAUNCHER=submitit_local", "PARALLEL=3",
                          "DIR=runs/x", "PRESET=cpu"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    out = out.replace("\\\n", " ")
    line = next(ln for ln in out.splitlines() if "cl_compress.launch.sweep" in ln)
    assert "--launcher submitit_local" in line and "--parallel 3" in line and '--dir "runs/x"' in line


def test_plan_selects_the_launcher_and_skips_finished_runs(tmp_path):
    jobs, _, _ = sweep.plan({"preset": "p"}, ["naive"], [0, 1], ["synthetic"], "n", tmp_path, [],
                            "joblib", 3)
    args = jobs[0]
    assert "hydra/launcher=joblib" in args and "hydra.launcher.n_jobs=3" in args
    assert "skip_if_done=true" in args and "keep_going=true" in args
    assert sweep.count_runs(args) == 2
    slurm, _, _ = sweep.plan({"preset": "p"}, ["naive"], [0], ["synthetic"], "n", tmp_path, [],
                             "submitit_slurm", 8)
    assert "hydra/launcher=submitit_slurm" in slurm[0]
    assert "hydra.launcher.array_parallelism=8" in slurm[0]


@pytest.mark.slow  # 16 s: a real submitit_local sweep (the joblib launcher runs in the default suite)
def test_submitit_local_sweep_isolates_a_failing_run(tmp_path):
    """submitit's local executor: naive runs, packnet fails inside its job (a prune schedule
    shorter than the stream); the other run is finished, the failure listed, exit code 1."""
    preset = _preset(tmp_path / "p.yaml", strategies=["naive", "packnet"], seeds=[0],
                     strategy_overrides={"packnet": ["strategy.prune_schedule=[0.5]"]})
    d = tmp_path / "sw"
    p = _sweep(["--preset", str(preset), "--dir", str(d), "--launcher", "submitit_local"])
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert list(_results(d)) == ["synthetic-task/naive/s0"]  # one run per directory
    meta = json.loads((d / "sweep.json").read_text())
    assert meta["launcher"] == "submitit_local" and (d / ".submitit").is_dir()
    assert meta["progress"]["done"] == 1 and meta["progress"]["failed"] == 1
    assert meta["progress"]["total"] == 2 and meta["progress"]["pending"] == 0
    [failed] = meta["failed_runs"]
    assert failed["run"] == "synthetic-task/packnet-p/s0" and "prune_schedule" in failed["error"]
    report = (d / "report.md").read_text()
    assert "`synthetic-task/packnet-p/s0` **failed**" in report and "| `naive` | 1 |" in report
    assert "[sweep] 1/2 done (0 kept), 1 failed" in p.stdout


@pytest.mark.slow  # ~45 s at load 6 on 2 cores; tests/test_notebook.py's sweep runs joblib by default
def test_default_launcher_killed_sweep_finishes_only_the_missing_runs(tmp_path):
    """The local default (joblib, one run at a time): SIGTERM to the sweep after its first
    finished run stops every run; the same command again keeps the finished run and does
    only the missing ones; the report then has all of them."""
    preset = _preset(tmp_path / "p.yaml", strategies=["naive"], seeds=[0, 1, 2])
    d = tmp_path / "sw"
    cmd = [sys.executable, "-m", "cl_compress.launch.sweep", "--preset", str(preset), "--dir", str(d),
           "--poll", "0.5"]
    first = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not _results(d) and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=120)[0]
    assert first.returncode == 130, out[-3000:]
    before = _results(d)
    assert 1 <= len(before) < 3, out[-3000:]
    time.sleep(1)
    for st in d.rglob("status.json"):  # nothing of the interrupted sweep still runs
        rec = json.loads(st.read_text())
        assert rec["state"] != "running" or not _pid_alive(rec["pid"]), rec
    assert json.loads((d / "sweep.json").read_text())["interrupted"] is True

    again = _sweep(["--preset", str(preset), "--dir", str(d)])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = _results(d)
    assert sorted(after) == [f"synthetic-task/naive/s{s}" for s in range(3)]
    assert all(after[k] == v for k, v in before.items())  # finished runs were kept, not redone
    log = "".join(p.read_text() for p in d.glob("multirun-*.log"))
    assert log.count("kept: ") == len(before)
    meta = json.loads((d / "sweep.json").read_text())
    assert meta["progress"]["kept"] == len(before) and meta["progress"]["done"] == 3
    assert len(meta["attempts"]) == 1 and meta["launcher"] == "joblib"
    assert "| `naive` | 3 |" in (d / "report.md").read_text()


def test_progress_counts_runs_from_their_files(tmp_path):
    from cl_compress.rundir.status import write_status

    prog = sweep.Progress(tmp_path, total=4, t0=time.time() - 10)
    write_status(tmp_path / "a" / "s0", "running")
    write_status(tmp_path / "a" / "s1", "failed", error="boom")
    (tmp_path / "a" / "s2").mkdir()
    (tmp_path / "a" / "s2" / "results.json").write_text(json.dumps(
        {"strategy": "naive", "n_tasks": 1, "acc_matrix": [[1.0]]}))
    p = prog.scan()
    assert (p["done"], p["kept"], p["failed"], p["running"], p["pending"]) == (1, 1, 1, 1, 1)
    assert p["failed_runs"] == [{"run": "a/s1", "error": "boom"}]
    assert p["eta_seconds"] == pytest.approx(20, abs=2)  # 1 run finished in 10 s, 2 left
    assert "1/4 done (1 kept), 1 failed, 1 running, 1 pending; ETA" in sweep.Progress.line(p)
