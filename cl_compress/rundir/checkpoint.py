"""What ``resume=true`` may continue: the same run, from a consistent checkpoint.

A checkpoint stores the run's training-relevant config (the resolved config without the
output and logging keys in :data:`NOT_COMPARED`). Resuming compares it with the current
config key by key and refuses any difference, naming every differing key, before data is
loaded; the checkpoint's structure (format, task counters against the accuracy matrix)
and its tensor shapes against the model are checked before anything is restored.
"""

from __future__ import annotations

import copy
import csv
import math
import os
from pathlib import Path
from typing import Any

import torch

from cl_compress.errors import CheckpointError
from cl_compress.rundir.finite import NonFiniteWeightsError, first_nonfinite

# output/logging keys: they may change between an interrupted run and its resumption
# keys that do not change what a run computes: ignored by resume and by a sweep's
# ``skip_if_done`` (status.config_hash) alike
CKPT_FORMAT = 1  # checkpoint.pt layout version (runner writes it, check_structure reads it)
NOT_COMPARED = ("logger", "hydra", "resume", "overwrite", "skip_if_done", "keep_going",
                "trainer.progress_bar", "strategy.variant", "device",
                "benchmark.on_device")  # where the batches are gathered, not what they hold
REQUIRED = ("format", "next_task", "n_tasks", "seed", "strategy_name", "acc_matrix", "timing",
            "model", "strategy", "config")
WANDB_ID_FILE = "wandb_run_id"


def training_config(c: dict[str, Any] | None) -> dict[str, Any]:
    """The config minus :data:`NOT_COMPARED` keys (what must match to resume)."""
    out = copy.deepcopy(dict(c or {}))
    for key in NOT_COMPARED:
        *parents, leaf = key.split(".")
        d: Any = out
        for p in parents:
            d = d.get(p) if isinstance(d, dict) else None
        if isinstance(d, dict):
            d.pop(leaf, None)
    return out


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict) or (not d and prefix):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


_MISSING = "<absent>"


def config_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key (checkpoint: a, now: b)`` for every training-relevant key that differs."""
    a, b = _flatten(training_config(stored)), _flatten(training_config(current))
    diffs = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, _MISSING), b.get(k, _MISSING)
        if va != vb or isinstance(va, bool) != isinstance(vb, bool):
            diffs.append(f"{k} (checkpoint: {va!r}, now: {vb!r})")
    return diffs


def check_structure(ck: Any, path: Path, n_tasks: int | None = None) -> None:
    """Format, required keys and task counters consistent with the accuracy matrix."""
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{path} is not a cl_compress checkpoint (format {CKPT_FORMAT})")
    missing = [k for k in REQUIRED if k not in ck]
    if missing:
        hint = " (written by an older version, which did not store the run's config)" \
            if missing == ["config"] else ""
        raise CheckpointError(f"{path} lacks {', '.join(missing)}{hint}; it cannot be checked "
                              f"against this run, so it is not resumed: start a fresh run")
    nt, T, R = ck["next_task"], ck["n_tasks"], ck["acc_matrix"]
    if not (isinstance(nt, int) and isinstance(T, int) and 1 <= nt <= T):
        raise CheckpointError(f"{path} is inconsistent: next_task={nt!r}, n_tasks={T!r} "
                              f"(need 1 <= next_task <= n_tasks)")
    if n_tasks is not None and T != n_tasks:
        raise CheckpointError(f"{path} was written for n_tasks={T}, this stream has {n_tasks}")
    if not isinstance(R, list) or len(R) != nt or any(
            not isinstance(r, list) or len(r) != i + 1 for i, r in enumerate(R)):
        shape = [len(r) if isinstance(r, list) else "?" for r in R] if isinstance(R, list) else R
        raise CheckpointError(f"{path} is inconsistent: next_task={nt} but the accuracy matrix has "
                              f"row lengths {shape} (expected 1..{nt})")
    if any(not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 1
           for r in R for v in r):
        raise CheckpointError(f"{path} is inconsistent: accuracies outside [0, 1]")
    model = ck["model"]
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path} is inconsistent: 'model' is not a state dict of tensors")
    if not isinstance(ck["strategy"], dict) or not isinstance(ck["timing"], dict):
        raise CheckpointError(f"{path} is inconsistent: 'strategy'/'timing' are not mappings")


def check_same_config(ck: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    diffs = config_differences(ck["config"], current)
    if diffs:
        raise CheckpointError(
            f"{path} belongs to a different run; resume needs the same settings, these differ: "
            f"{'; '.join(diffs)}. Resume with the checkpoint's settings, or start a fresh run "
            f"in another hydra.run.dir"
        )


def load_strategy_state(strategy: Any, state: dict[str, Any], path: Path) -> None:
    """``strategy.load_state_dict(state)``; a state this code version cannot read (a key
    missing or renamed, a value of another type or shape) is one line, not a traceback."""
    from cl_compress.errors import UserError

    try:
        strategy.load_state_dict(state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        if isinstance(e, UserError):
            raise
        raise state_error(path, getattr(strategy, "name", "strategy"),
                          "this version cannot restore", e) from e


def state_error(path: Path, strategy_name: str, what: str, e: BaseException) -> CheckpointError:
    """The one-line refusal of a checkpoint whose strategy state this code cannot use
    (written by another code version, or damaged): the cause's first line, and advice that
    keeps the checkpoint."""
    first = (str(e).splitlines() or [""])[0][:200]
    return CheckpointError(
        f"{path} holds a {strategy_name} state {what} ({type(e).__name__}: {first}); it was "
        f"written by another code version or is damaged: resume with the version that wrote it "
        f"(the checkpoint is kept; overwrite=true would start the run afresh and discard its "
        f"finished tasks)")


def check_finite_checkpoint(ck: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint holding NaN/inf weights or strategy state (resume would train
    from them and report after a whole task)."""
    hit = first_nonfinite({"model": ck.get("model"), "strategy": ck.get("strategy")})
    if hit:
        name, bad, n = hit
        raise CheckpointError(f"{path} holds non-finite values ({name}: {bad} of {n} NaN/inf); "
                              f"it cannot be resumed: start a fresh run with overwrite=true")


def describe_checkpoint(run_dir: str | Path) -> str:
    """One phrase on what ``checkpoint.pt`` in ``run_dir`` keeps (for stop messages)."""
    from cl_compress.rundir.io import load_torch

    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        return "no task had finished, so no checkpoint was written"
    try:
        nt = int(load_torch(path)["next_task"])
    except Exception as e:  # noqa: BLE001  (the message must still come out)
        return f"{path} could not be read back ({type(e).__name__})"
    tasks = "task 0" if nt == 1 else f"tasks 0-{nt - 1}"
    return f"{path} keeps {tasks} (next_task={nt})"


def file_sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- metrics.csv and W&B run id on resume --------------------------------------------

def trim_metrics_csv(path: Path, next_task: int) -> int:
    """Keep the rows of metrics.csv up to the last row of task ``next_task - 1`` (drop the
    rows of a task that was interrupted); return the last kept global epoch number."""
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    last = -1
    for i, r in enumerate(body):
        if len(r) > 1 and r[1] != "" and _int(r[1]) == next_task - 1:
            last = i
    kept = body[:last + 1]
    tmp = path.with_name(f".{path.name}.trim.tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([header, *kept])
    os.replace(tmp, path)
    epochs = [_int(r[2]) for r in kept if len(r) > 2 and r[2] != ""]
    return max((e for e in epochs if e is not None), default=0)


def _int(s: str) -> int | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return int(v) if math.isfinite(v) else None


def wandb_run_id(run_dir: Path, resume: bool) -> str:
    """The run directory's W&B run id: read back on resume, else a new one stored there."""
    path = run_dir / WANDB_ID_FILE
    if resume and path.is_file():
        rid = path.read_text().strip()
        if rid:
            return rid
    import secrets

    rid = secrets.token_hex(4)
    path.write_text(rid + "\n")
    return rid


def check_state(model: torch.nn.Module, strategy: Any, task: int, run_dir: str | Path) -> None:
    """Raise :class:`~cl_compress.rundir.finite.NonFiniteWeightsError` if the model or the strategy
    state is not finite, naming the last finite checkpoint."""
    hit = first_nonfinite({"model": model.state_dict(), "strategy": strategy.state_dict()})
    if hit:
        name, bad, n = hit
        raise NonFiniteWeightsError(
            f"weights became non-finite during task {task} ({name}: {bad} of {n} values NaN/inf), "
            f"so nothing was saved for it; last finite checkpoint: {describe_checkpoint(run_dir)}; "
            f"the same settings diverge again: lower the learning rate (train.lr) and start "
            f"afresh with overwrite=true"
        )
