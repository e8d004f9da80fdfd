"""Preemption: SIGTERM (what SLURM and most schedulers send) or SIGUSR1 ends the run with
a non-zero status and a one-line message naming what ``checkpoint.pt`` keeps.

The handler raises :class:`Preempted` (a ``BaseException``, like ``KeyboardInterrupt``,
so no ``except Exception`` on the way swallows it). Lightning, which would otherwise
turn SIGTERM into ``SystemExit(None)`` -- status 0 -- calls this handler too and then
re-raises what it raises. Checkpoint writes are atomic, so the last finished task stays
on disk whenever the signal lands.

Under DDP (several processes in one process group) a rank must not leave on its own: the
others would wait for it in their next collective. There the handler only notes the signal,
and at every training step boundary all ranks agree (an all-reduce of the noted signal,
:class:`StopAtStepBoundary`) and raise :class:`Preempted` together, whichever rank got the
signal (``kill <pid>`` reaches rank 0 alone). Lightning's own SIGTERM handler, which
broadcasts from inside the handler on rank 0 alone, is replaced for the fit. The process
group gets a short timeout (:data:`DDP_TIMEOUT`, not torch's 30 minutes) so a rank that
died or never came fails the others in minutes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# seconds of the DDP process group's rendezvous and collective timeout
DDP_TIMEOUT = int(os.environ.get("CL_COMPRESS_DDP_TIMEOUT", "600"))
_pending: list[int] = []  # a signal noted under DDP, acted on at the next step boundary
_handler: list = []  # the installed handler (re-installed over Lightning's for each fit)


def _distributed() -> bool:
    """Whether this process is one rank of several in an initialised process group."""
    import sys

    if "torch.distributed" not in sys.modules:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


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
    _pending.clear()

    def handler(signum, frame):
        if fired or _pending:  # a second signal during the shutdown: already stopping
            return
        if _distributed():  # every rank stops together at the next step boundary
            _pending.append(signum)
            return
        fired.append(signum)
        raise Preempted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    _handler[:] = [handler]
    try:
        yield
    except Preempted as e:
        from cl_compress.rundir.checkpoint import describe_checkpoint

        _leave_process_group()

        name = signal.Signals(e.signum).name
        if (Path(run_dir) / "checkpoint.pt").exists():
            todo = "to continue, rerun the same command with resume=true (or resume=auto)"
        else:
            todo = "to start again, rerun the same command (resume=auto also works)"
        raise Preempted(e.signum, f"stopped by {name}; {describe_checkpoint(run_dir)}; {todo} "
                                  f"hydra.run.dir={run_dir}") from None
    finally:
        _handler.clear()
        _pending.clear()
        for s, h in previous.items():
            signal.signal(s, h)


def _leave_process_group() -> None:
    """Every rank stopped at the same step: close the process group now."""
    if _distributed():
        import gc

        import torch.distributed as dist

        with contextlib.suppress(Exception):
            dist.destroy_process_group()
        # the process ends now: spare every rank a collection of the whole heap at exit
        # (tens of seconds on a busy machine, while a scheduler waits to reuse the devices)
        gc.freeze()


def check_stop(device=None) -> None:
    """At a step boundary of every rank: raise :class:`Preempted` on all ranks when any
    of them noted a signal (one all-reduce of a single integer)."""
    if not _distributed():
        if _pending:
            raise Preempted(_pending[0])
        return
    import torch
    import torch.distributed as dist

    flag = torch.tensor([_pending[0] if _pending else 0], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    signum = int(flag.item())
    if signum:
        _pending[:] = [signum]
        raise Preempted(signum)


def stop_callback():
    """A Lightning callback: our handlers for the fit (over Lightning's), and
    :func:`check_stop` after every training batch."""
    import lightning.pytorch as L

    class StopAtStepBoundary(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            # Lightning registered its SIGTERM handler (a broadcast from rank 0 alone,
            # inside the handler) after on_fit_start: ours replaces it for this fit;
            # Lightning's teardown restores the handlers it found (ours)
            if _handler and threading.current_thread() is threading.main_thread():
                for s in SIGNALS:
                    signal.signal(s, _handler[0])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            check_stop(trainer.strategy.root_device)

    return StopAtStepBoundary()


def trainer_strategy(name):
    """Lightning's ``strategy`` argument: ``ddp`` with the short :data:`DDP_TIMEOUT`."""
    if name != "ddp":
        return name
    import datetime as dt

    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(timeout=dt.timedelta(seconds=DDP_TIMEOUT))
