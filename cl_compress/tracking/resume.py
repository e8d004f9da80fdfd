"""One offline W&B history per run across resumes.

``wandb.init`` in offline mode always writes a new ``offline-run-<time>-<id>`` folder, so a
resumed run would leave two folders with the same id, the second restarting at step 0 and
repeating the interrupted task's training rows. Instead, a resumed offline run *replays* the
history the earlier session(s) wrote for the finished tasks (read back from their ``.wandb``
records, :mod:`cl_compress.tracking.offline`) into the new run before training continues,
then renames the earlier folders ``replayed-offline-run-*``. The new folder then holds the
whole history, in order, with the interrupted task's rows dropped (as ``metrics.csv`` does),
and ``wandb sync <that folder>`` uploads the whole run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
RETIRED_PREFIX = "replayed-"


def earlier_sessions(wandb_root: Path, run_id: str, current: Path | None = None) -> list[Path]:
    """The ``offline-run-*`` folders of ``run_id`` under ``wandb_root`` (oldest first), but
    ``current``."""
    found = [p for p in wandb_root.glob(f"offline-run-*-{run_id}*")
             if p.is_dir() and (current is None or p.resolve() != current.resolve())
             and (p.name.endswith(run_id) or p.name.rsplit("-", 1)[0].endswith(run_id))]
    return sorted(found, key=lambda p: p.name)


def kept_rows(folders: list[Path], resume_task: int) -> list[dict[str, Any]]:
    """The history rows of the tasks finished before ``resume_task`` (training rows by
    ``train/task``, per-task rows by ``task``), scalars only: media and tables are logged
    again by the run (the accuracy chart after the next task, matrices at the end)."""
    from cl_compress.tracking.offline import read_run

    out: list[dict[str, Any]] = []
    for folder in folders:
        for row in read_run(folder).history:
            task = row.get("train/task", row.get("task"))
            if not isinstance(task, int | float) or task >= resume_task:
                continue
            out.append({k: v for k, v in row.items() if not k.startswith("_")
                        and isinstance(v, int | float | str) and not isinstance(v, bool)})
    return out


def continue_history(run: Any, run_dir: Path, resume_task: int) -> int:
    """Replay the earlier sessions' rows into ``run`` (a fresh offline run with the same id)
    and retire their folders; returns the number of rows replayed. Unreadable earlier
    records are left where they are (with a warning): nothing is lost."""
    current = Path(run.dir).parent
    folders = earlier_sessions(current.parent, run.id, current)
    if not folders:
        return 0
    try:
        rows = kept_rows(folders, resume_task)
    except Exception as e:  # noqa: BLE001  (a half-written log: keep the folders as they are)
        log.warning("W&B: earlier offline records of run %s not replayed (%s: %s); sync them "
                    "with `wandb sync %s`", run.id, type(e).__name__, e,
                    " ".join(str(f) for f in [*folders, current]))
        return 0
    for row in rows:
        run.log(row)
    for f in folders:
        f.rename(f.with_name(RETIRED_PREFIX + f.name))
    return len(rows)
