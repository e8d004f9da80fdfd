"""The state of one run directory, as sweeps, resume and progress see it.

``cl_compress.train`` writes ``status.json`` into its run directory: ``running`` when the
job starts (pid, host, start time and a hash of its config), ``done`` after results.json is
written, ``failed`` with the error when it raises. A run is *finished* when its results.json
is complete (one accuracy row per task) and was written with the same config (logging and
resume keys aside): ``skip_if_done=true`` keeps such a run instead of training it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from cl_compress.rundir.io import write_json

STATUS = "status.json"
REFUSED = "refused.json"  # a run refused in this directory (another config's run is there)
# config keys that do not change what a run computes (logging, progress, sweep control)


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the keys that do not change the result (logger, progress bar,
    resume / skip / keep-going switches)."""
    from cl_compress.rundir.checkpoint import training_config  # one list of neutral keys for resume and skip

    return json.loads(json.dumps(training_config(config), sort_keys=True, default=str))


def config_hash(config: dict[str, Any]) -> str:
    """A short hash of :func:`comparable` ``(config)``.

    >>> config_hash({"seed": 0, "logger": {"group": "a"}}) == config_hash({"seed": 0})
    True
    """
    return hashlib.sha1(json.dumps(comparable(config), sort_keys=True).encode()).hexdigest()[:12]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def complete_results(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's results.json when it is complete (a row of the accuracy matrix per task)."""
    res = read_json(Path(run_dir) / "results.json")
    if not res or "strategy" not in res or not isinstance(res.get("acc_matrix"), list):
        return None
    if len(res["acc_matrix"]) != res.get("n_tasks"):
        return None
    return res


def is_finished(run_dir: str | Path, config: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds a complete results.json written with ``config``."""
    res = complete_results(run_dir)
    return res is not None and comparable(res.get("config") or {}) == comparable(config)


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    return read_json(Path(run_dir) / STATUS)


def write_status(run_dir: str | Path, state: str, **info: Any) -> dict[str, Any]:
    """Write ``status.json`` (atomically); a ``running`` record keeps nothing of an older
    one, ``done``/``failed`` keep its start time and config hash."""
    path = Path(run_dir) / STATUS
    old = (read_json(path) or {}) if state != "running" else {}
    now = time.time()
    rec = {k: old[k] for k in ("started", "started_at", "pid", "host", "config_hash") if k in old}
    rec |= {"state": state, "updated": now,
            "updated_at": dt.datetime.fromtimestamp(now).isoformat(timespec="seconds")}
    if state == "running":
        rec |= {"started": now, "started_at": rec["updated_at"], "pid": os.getpid(),
                "host": socket.gethostname()}
    if "started" in rec:
        rec["seconds"] = round(now - rec["started"], 1)
    rec |= info
    write_json(path, rec)
    if state == "done":  # this config's run finished here: no refusal stands
        (Path(run_dir) / REFUSED).unlink(missing_ok=True)
    return rec


def record_refusal(run_dir: str | Path, config_hash_: str, error: str) -> None:
    """Note beside the directory's own run that a run of another config was refused there
    (``refused.json``): a sweep then names the folder as stale instead of counting the old
    run as done; the directory's own ``status.json`` stays as it is."""
    now = time.time()
    write_json(Path(run_dir) / REFUSED, {
        "config_hash": config_hash_, "error": error, "updated": now,
        "updated_at": dt.datetime.fromtimestamp(now).isoformat(timespec="seconds")})


def read_refusal(run_dir: str | Path) -> dict[str, Any] | None:
    return read_json(Path(run_dir) / REFUSED)
