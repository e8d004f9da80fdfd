"""One progress display for the whole run (every task and phase), instead of one
Lightning bar per ``Trainer.fit``.

On a terminal: a single line redrawn in place (at most every ``REDRAW_SECONDS``)::

    task 2/5 · train · epoch 3 · step 450/1000 · loss 0.312 · run 43% · 0:35 elapsed · ETA 0:47

When stdout is not a terminal (a pipe, a log file, a batch job): plain lines, no carriage
returns: an epoch's line at most every ``PIPE_SECONDS`` (and each phase's last epoch), so a
run of many short epochs (split_digits: 2 steps an epoch) prints tens of lines, not
thousands. After each task (both cases, and also with ``trainer.progress_bar=false``)
one line with the task's accuracies, their average, the task's time and the run's ETA.

The ETA is the run's own rate (wall time per optimiser step, evaluation included) times the
steps left: exact counts with ``train.steps_per_task``; by epochs, later tasks are assumed
to take as many steps as the current one.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from typing import Any, TextIO

log = logging.getLogger("cl_compress.engine.loop")
REDRAW_SECONDS = 0.5
PIPE_SECONDS = 10.0


def clock(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunProgress:
    """Progress of one run; the runner tells it about tasks and phases, the training
    system about steps and epochs. ``show=False`` keeps only the per-task lines."""

    def __init__(self, n_tasks: int, show: bool = True, stream: TextIO | None = None,
                 tty: bool | None = None, first_task: int = 0, pipe_seconds: float = PIPE_SECONDS):
        self.n_tasks = n_tasks
        self.show = show
        self.out = stream or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.t0 = time.perf_counter()
        self.first_task = first_task
        self.task = first_task
        self.phase = ""
        self.phase_steps: int | None = None  # planned steps of the current phase
        self.task_planned = 0  # planned steps of the current task
        self.steps_before_task = 0  # steps this process did in earlier tasks
        self.steps_done = 0  # steps this process did (all tasks)
        self._drawn = 0.0
        self.pipe_seconds = pipe_seconds
        self._printed = -float("inf")  # when the last piped epoch line was written
        self._line = False  # a redrawn line is on screen

    # --- told by the runner ------------------------------------------------------------
    def start_task(self, task: int, planned_steps: int) -> None:
        self.task, self.task_planned = task, planned_steps
        self.steps_before_task = self.steps_done

    def start_phase(self, name: str, planned_steps: int | None) -> None:
        self.phase, self.phase_steps = name, planned_steps

    def task_done(self, task: int, row: list[float], seconds: float,
                  accuracy: str | None = None) -> None:
        """``accuracy``: the line's accuracy text, each figure named by its meaning
        (:func:`cl_compress.tracking.keys.terminal_line`); by default ``row``'s average."""
        if accuracy is None:
            accuracy = (f"avg {sum(row) / len(row):.4f} over {len(row)} seen "
                        f"[{' '.join(f'{a:.4f}' for a in row)}]")
        eta = "" if task + 1 >= self.n_tasks else f", ETA {clock(self.eta())}"
        self._clear()
        log.info("task %d (%d of %d) done in %s: %s (elapsed %s%s)", task, task + 1,
                 self.n_tasks, clock(seconds), accuracy, clock(self.elapsed()), eta)

    # --- told by the training system ------------------------------------------------------
    def step(self, system: Any, loss: float) -> None:
        self.steps_done = self.steps_before_task + system.task_steps
        if not (self.show and self.tty):
            return
        now = time.perf_counter()
        if now - self._drawn < REDRAW_SECONDS:
            return
        self._drawn = now
        width = shutil.get_terminal_size((120, 20)).columns - 1  # a wrapped line cannot be redrawn
        self.out.write("\r\033[K" + self._status(system, f"loss {loss:.3f}")[:width])
        self.out.flush()
        self._line = True

    def epoch_end(self, system: Any, stats: dict[str, Any]) -> None:
        self.steps_done = self.steps_before_task + system.task_steps
        if not self.show or self.tty:
            return
        now = time.perf_counter()
        phase_end = bool(self.phase_steps) and getattr(system, "phase_steps", system.task_steps) \
            >= self.phase_steps
        if now - self._printed < self.pipe_seconds and not phase_end:
            return
        self._printed = now
        text = self._status(system, f"loss {stats['train/loss']:.4f} acc {stats['train/acc']:.4f}")
        self.out.write(text + "\n")
        self.out.flush()

    # --- helpers -----------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def planned_total(self) -> int:
        """Steps this process will do: tasks before the current one as done, the current
        one as planned, each later one like the current one."""
        left_tasks = self.n_tasks - self.task - 1
        return self.steps_before_task + self.task_planned * (1 + left_tasks)

    def eta(self) -> float | None:
        if self.steps_done <= 0:
            return None
        rate = self.elapsed() / self.steps_done
        return max(0.0, (self.planned_total() - self.steps_done) * rate)

    def _status(self, system: Any, figures: str) -> str:
        total = self.planned_total()
        pct = f"run {100 * self.steps_done / total:.0f}%" if total else "run ?%"
        step = f"step {system.task_steps}/{self.task_planned}" if self.task_planned else \
            f"step {system.task_steps}"
        return (f"task {self.task} ({self.task + 1} of {self.n_tasks}) · {self.phase} · epoch "
                f"{system.phase_epoch + (0 if self.tty is False else 1)} · {step} · {figures} · {pct} · "
                f"{clock(self.elapsed())} elapsed · ETA {clock(self.eta())}")

    def _clear(self) -> None:
        if self._line:
            self.out.write("\r\033[K")
            self.out.flush()
            self._line = False
