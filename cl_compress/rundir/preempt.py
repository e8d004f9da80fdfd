"""Preemption: SIGTERM (what SLURM and most schedulers send) or SIGUSR1 ends the run with
a non-zero status and a one-line message naming what ``checkpoint.pt`` keeps.

The handler raises :class:`Preempted` (a ``BaseException``, like ``KeyboardInterrupt``,
so no ``except Exception`` on the way swallows it). Lightning, which would otherwise
turn SIGTERM into ``SystemExit(None)`` -- status 0 -- calls this handler too and then
re-raises what it raises. Checkpoint writes are atomic, so the last finished task stays
on disk whenever the signal lands.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(BaseException):
    """The run was stopped by a signal; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def stop_on_signals(run_dir: str | Path) -> Iterator[None]:
    """Install the handlers for the body of the ``with`` (main thread only), restore the
    previous ones after, and word the stop message from the checkpoint on disk."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if fired:  # a second signal during the shutdown: already stopping
            return
        fired.append(signum)
        raise Preempted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    except Preempted as e:
        from cl_compress.rundir.checkpoint import describe_checkpoint

        name = signal.Signals(e.signum).name
        if (Path(run_dir) / "checkpoint.pt").exists():
            todo = "to continue, rerun the same command with resume=true (or resume=auto)"
        else:
            todo = "to start again, rerun the same command (resume=auto also works)"
        raise Preempted(e.signum, f"stopped by {name}; {describe_checkpoint(run_dir)}; {todo} "
                                  f"hydra.run.dir={run_dir}") from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
