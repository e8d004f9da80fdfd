"""The run's one progress display: plain lines when piped, one redrawn line on a terminal."""

import io

from cl_compress.progress import RunProgress, clock


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


def test_piped_output_is_one_plain_line_per_epoch():
    out = io.StringIO()
    _drive(RunProgress(2, stream=out, tty=False), epochs=3, steps_per_epoch=4)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 2 * 3
    assert lines[0].startswith("task 1/2 · train · epoch 1 · step 4/12 · loss 0.5000 acc 0.9000")
    assert "run 100%" in lines[-1] and "ETA 0:00" in lines[-1]


def test_terminal_redraws_one_line_and_quiet_mode_prints_nothing():
    out = io.StringIO()
    p = RunProgress(2, stream=out, tty=True)
    p._drawn = -1e9
    _drive(p, epochs=1, steps_per_epoch=2)
    assert out.getvalue().startswith("\r\033[Ktask 1/2") and "\n" not in out.getvalue()
    quiet = io.StringIO()
    _drive(RunProgress(2, show=False, stream=quiet, tty=False), epochs=2, steps_per_epoch=2)
    assert quiet.getvalue() == ""
    assert clock(75) == "1:15" and clock(3725) == "1:02:05" and clock(None) == "?"
