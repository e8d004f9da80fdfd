"""Run callbacks: the cross-cutting concerns of the task loop (:mod:`cl_compress.engine.loop`),
each subscribing to the loop's events instead of being written into it.

=================  ============================================================================
``BudgetLedger``   the work actually done per task and phase (results.json ``budget``)
``Checkpointer``   resume (one load, every callback's state restored) and ``checkpoint.pt``
``ClassILInference``  opt-in class-incremental evaluation: task id inferred at test time
``SharedHeadTaskIL``  a class-IL run of a shared head (naive): its task-IL figures too
``RankAgreement``  under DDP, every rank holds bit-identical state after each task
``TaskFootprint``  per-task stored size, state, checkpoint size, inference cost
``TaskLogger``     W&B and metrics.csv: per-task metrics, charts, the summary, the model
``ProgressDisplay``  the run's one progress line and the per-task lines
``TaskEndHook``    a user function ``f(t, model, strategy)`` after each finished task
=================  ============================================================================

A callback subclasses :class:`RunCallback` and overrides the events it needs; the loop calls
every callback for each event in list order (:func:`cl_compress.engine.loop.default_callbacks`).
"""

from cl_compress.engine.callbacks.base import LoopState, RunCallback, TaskEndHook, task_seed
from cl_compress.engine.callbacks.budget import BudgetLedger
from cl_compress.engine.callbacks.checkpoint import CHECKPOINT, Checkpointer
from cl_compress.engine.callbacks.class_il import ClassILInference, SharedHeadTaskIL
from cl_compress.engine.callbacks.footprint import TaskFootprint
from cl_compress.engine.callbacks.progress import ProgressDisplay
from cl_compress.engine.callbacks.ranks import RankAgreement, state_fingerprint
from cl_compress.engine.callbacks.task_logger import TaskLogger

__all__ = [
    "CHECKPOINT", "BudgetLedger", "Checkpointer", "ClassILInference", "LoopState",
    "ProgressDisplay", "RankAgreement", "RunCallback", "SharedHeadTaskIL", "TaskEndHook",
    "TaskFootprint", "TaskLogger",
    "state_fingerprint", "task_seed",
]
