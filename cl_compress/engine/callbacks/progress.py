"""``ProgressDisplay``: the run's one progress line (:mod:`cl_compress.engine.progress`)."""

from __future__ import annotations

from cl_compress.engine.callbacks.base import LoopState, RunCallback
from cl_compress.engine.progress import RunProgress


class ProgressDisplay(RunCallback):
    def __init__(self, show: bool):
        self.show = show
        self.progress: RunProgress | None = None

    def on_run_start(self, state: LoopState) -> None:
        from cl_compress.rundir.rank import is_rank_zero

        self.progress = RunProgress(state.n_tasks, show=self.show and is_rank_zero(),
                                    first_task=state.start)
        state.system.progress = self.progress if is_rank_zero() else None

    def on_fit_start(self, state: LoopState, t: int) -> None:
        self.progress.start_task(t, sum(state.planned))

    def on_phase_start(self, state, t, k, phase) -> None:
        self.progress.start_phase(phase.name, state.planned[k])

    def on_task_end(self, state: LoopState, t: int) -> None:
        from cl_compress.tracking import keys

        self.progress.task_done(t, state.R[t], state.timing["task_seconds"][-1],
                                keys.terminal_line(state.views(), t))
