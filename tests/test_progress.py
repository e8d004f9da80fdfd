"""The run's one progress display: plain lines when piped, one redrawn line on a terminal."""

import io

import pytest

from cl_compress.engine.progress import RunProgress, clock


class FakeSystem:
    task_steps = 0
    phase_epoch = 0


def _drive(progress: RunProgress, epochs: int, steps_per_epoch: int) -> None:
    system = FakeSystem()
    for t in range(2):
        progress.start_task(t, epochs * steps_per_epoch)
        progress.start_phase("train", epochs * steps_per_epoch)
        system.task_steps = system.phase_epoch = 0
        for _ in range(epochs):
            for _ in range(steps_per_epoch):
                system.task_steps += 1
                progress.step(system, 0.5)
            system.phase_epoch += 1
            progress.epoch_end(system, {"train/loss": 0.5, "train/acc": 0.9})
        progress.task_done(t, [0.9] * (t + 1), 1.0)


def test_piped_output_is_plain_lines_at_most_every_pipe_seconds():
    out = io.StringIO()
    _drive(RunProgress(2, stream=out, tty=False), epochs=50, steps_per_epoch=2)
    lines = out.getvalue().splitlines()
    # well within PIPE_SECONDS: the first epoch's line and each phase's last epoch only
    assert [ln.split(" · step")[0] for ln in lines] == [
        "task 0 (1 of 2) · train · epoch 1", "task 0 (1 of 2) · train · epoch 50",
        "task 1 (2 of 2) · train · epoch 50"]
    out = io.StringIO()
    _drive(RunProgress(2, stream=out, tty=False, pipe_seconds=0), epochs=3, steps_per_epoch=4)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 2 * 3
    assert lines[0].startswith("task 0 (1 of 2) · train · epoch 1 · step 4/12 · loss 0.5000 acc 0.9000")
    assert "run 100%" in lines[-1] and "ETA 0:00" in lines[-1]


def test_terminal_redraws_one_line_and_quiet_mode_prints_nothing():
    out = io.StringIO()
    p = RunProgress(2, stream=out, tty=True)
    p._drawn = -1e9
    _drive(p, epochs=1, steps_per_epoch=2)
    assert out.getvalue().startswith("\r\033[Ktask 0 (1 of 2)") and "\n" not in out.getvalue()
    quiet = io.StringIO()
    _drive(RunProgress(2, show=False, stream=quiet, tty=False), epochs=2, steps_per_epoch=2)
    assert quiet.getvalue() == ""
    assert clock(75) == "1:15" and clock(3725) == "1:02:05" and clock(None) == "?"


@pytest.mark.slow  # 9 s: a CLI run; the piped format is tested in-process
def test_piped_cli_run_prints_plain_lines_only(tmp_path):
    """A run piped to a file: one line per epoch, a line per task, the summary; no redraws."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "cl_compress.train", "benchmark=synthetic", "logger=none",
                        "strategy=packnet", "train.steps_per_task=30", "train.batch_size=32",
                        f"hydra.run.dir={tmp_path / 'r'}"], capture_output=True, text=True, cwd=root)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    assert "\r" not in out and "\r" not in p.stderr
    lines = out.splitlines()
    epochs = [x for x in lines if x.startswith("task ") and " · epoch " in x]
    phases = {x.split(" · ")[1] for x in epochs}
    assert phases == {"train", "retrain"}  # PackNet's two phases, each named on its lines
    # 80 training samples / batch 32 = 3 batches per epoch; 20 train + 10 retrain steps: 7 + 4
    # epochs; the last task is not pruned (prune_last=false): one phase of 30 steps, 10 epochs.
    # Piped, an epoch's line comes at most every PIPE_SECONDS, and at every phase's end (5)
    ends = [x for x in epochs if " · step 20/30 " in x or " · step 30/30 " in x]
    assert len(ends) >= 5 and len(epochs) <= 2 * (7 + 4) + 10
    assert sum(" done in " in x for x in lines) == 3
    assert any(x.startswith("  forgetting  ") for x in lines) and len(lines) < 60
    assert "Warning" not in p.stderr and "anonymous" not in out + p.stderr
