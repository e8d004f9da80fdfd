"""Experiment tracking: W&B (``wandb.init``, offline by default), a CSV, and figures.

W&B runs offline unless ``WANDB_MODE`` (or ``logger.mode``) says otherwise; offline runs
can be uploaded later with ``wandb sync <run_dir>/wandb/offline-run-*``. Any W&B failure
is reported once and then W&B is switched off: logging never kills a run. Only the
global rank-0 process writes anything.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from cl_compress.rundir.checkpoint import trim_metrics_csv, wandb_run_id
from cl_compress.rundir.rank import is_rank_zero
from cl_compress.settings import TrackerSettings
from cl_compress.settings.validate import wandb_credentials

log = logging.getLogger(__name__)
# context of a training row: W&B columns, not metrics.csv values
CONTEXT_KEYS = frozenset({"train/task", "train/phase", "train/phase_index", "train/step",
                          "train/task_step", "train/phase_epoch"})
ACC_CHART = "eval/acc_per_task"  # the multi-line chart of every task's accuracy


def heatmap_png(matrix: list[list[float | None]], path: Path, title: str) -> Path:
    """Draw the accuracy matrix (rows: after training task i; cols: task j) as a PNG, with
    the report's drawing (:func:`cl_compress.report.plots.matrix_figure`)."""
    from cl_compress.report.plots import matrix_figure  # matplotlib: only when a matrix is logged

    matrix_figure(matrix, title).savefig(path, dpi=110)
    return path


class Tracker:
    """Logs metrics to W&B and ``metrics.csv`` in the run directory (rank 0 only).

    A fresh run (``resume=False``) starts a new ``metrics.csv``, replacing any file a previous
    run left in the same directory, so a run never mixes its rows with another run's; a resumed
    run (``resume=True``) appends to the file of the run it continues.
    """

    def __init__(self, run_dir: str | Path, settings: TrackerSettings, name: str, group: str,
                 config: dict[str, Any], tags: list[str] | None = None,
                 resume_task: int | None = None):
        self.run_dir = Path(run_dir)
        self.name = name
        self.enabled = is_rank_zero()
        self._wandb = None
        self._epoch = 0
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # resume: one history (rows of the interrupted task dropped, epochs continue);
        # W&B continues the run directory's run id (resume.py)
        self._resuming = resume_task is not None
        self._resume_task = resume_task or 0
        if self._resuming:
            self._epoch = trim_metrics_csv(self.run_dir / "metrics.csv", resume_task)
        self._csv_file = open(self.run_dir / "metrics.csv", "a" if self._resuming else "w", newline="")
        self._csv = csv.writer(self._csv_file)
        if self._csv_file.tell() == 0:
            self._csv.writerow(["time", "experience", "epoch", "key", "value"])
        if settings.wandb:
            self._start_wandb(settings, name, group or settings.group, config, tags or [])

    def _start_wandb(self, s: TrackerSettings, name: str, group: str | None, config: dict,
                     tags: list[str]) -> None:
        mode = s.mode or os.environ.get("WANDB_MODE") or "offline"
        if mode == "disabled":
            return
        if mode == "online" and not wandb_credentials():  # never stop at W&B's login prompt
            log.warning("W&B switched off: online mode but no API key (WANDB_API_KEY, `wandb login`)")
            return
        try:
            import wandb

            # wandb.init itself, not Lightning's WandbLogger: the logger adds a
            # `trainer/global_step` (0 here: every phase is a new Trainer) to every row and
            # passes W&B's deprecated `anonymous` setting (a warning on every run)
            run = wandb.init(
                project=s.project, entity=s.entity, name=name, group=group,
                tags=_unique(list(s.tags) + tags), dir=str(self.run_dir),
                mode="offline" if mode in ("offline", "dryrun") else mode, config=config,
                settings=_wandb_settings(s), reinit="finish_previous",
                id=wandb_run_id(self.run_dir, self._resuming), resume="allow",
            )
            # axes: `train/step` (optimiser steps over the whole run) for training rows, which
            # also carry `train/task`, `train/phase` and `train/task_step` (steps within the
            # task: a per-task axis); `task` for everything measured after a task
            run.define_metric("train/step")
            run.define_metric("task")
            run.define_metric("train/*", step_metric="train/step")
            for prefix in ("eval/*", "stream/*", "compress/*", "time/*", "budget/*"):
                run.define_metric(prefix, step_metric="task")
            self._wandb = run
            if self._resuming and _offline(run):  # one history per run id
                from cl_compress.tracking.resume import continue_history

                continue_history(run, self.run_dir, self._resume_task)
        except Exception as e:  # never let logging kill the run
            self._warn(e)

    def _warn(self, e: Exception) -> None:
        log.warning("W&B logging switched off after an error: %s: %s", type(e).__name__, e)
        self._wandb = None

    def _wandb_log(self, payload: dict[str, Any]) -> None:
        if self._wandb is None:
            return
        try:
            self._wandb.log(payload)
        except Exception as e:
            self._warn(e)

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        """Per-epoch training figures with their context (``train/task``, ``train/phase``,
        ``train/step``, ``train/task_step``, when the caller gives them) to W&B; metrics.csv
        keeps the figures on a global epoch counter (its ``experience`` column stays empty:
        it marks the per-task rows)."""
        if not self.enabled:
            return
        self._epoch += 1
        for k, v in metrics.items():
            if k in CONTEXT_KEYS or isinstance(v, str):
                continue
            self._csv.writerow([f"{time.time():.3f}", "", self._epoch, k, v])
        self._wandb_log({**metrics, "train/epoch": self._epoch})

    def log_experience(self, experience: int, metrics: dict[str, float]) -> None:
        """Figures measured after a task (eval accuracies, stream metrics, sizes, times).

        Every key is a W&B scalar at x = ``task`` (names: :mod:`cl_compress.tracking.keys`):
        ``eval/acc/task_<j>`` after each task overlays and averages across runs, as
        Avalanche logs one scalar per experience; the multi-line chart
        (:meth:`log_accuracy_chart`) draws the same figures in one panel."""
        if not self.enabled:
            return
        for k, v in metrics.items():
            self._csv.writerow([f"{time.time():.3f}", experience, "", k, v])
        self._csv_file.flush()
        self._wandb_log(dict(metrics) | {"task": experience})

    def log_accuracy_chart(self, matrix: list[list[float]]) -> None:
        """One W&B line series: the accuracy on each task j (a line) after training each
        task i >= j (x axis), re-logged after every task (the latest version is shown)."""
        if self._wandb is None or not matrix:
            return
        try:
            import wandb

            T = len(matrix)
            xs = [list(range(j, T)) for j in range(T)]
            ys = [[matrix[i][j] for i in range(j, T)] for j in range(T)]
            chart = wandb.plot.line_series(xs=xs, ys=ys, keys=[f"task {j}" for j in range(T)],
                                           title="accuracy on each task", xname="after task")
            self._wandb.log({ACC_CHART: chart, "task": T - 1})
        except Exception as e:
            self._warn(e)

    def log_matrix(self, matrix: list[list[float | None]], title: str,
                   key: str = "acc_matrix") -> None:
        """The accuracy matrix as a W&B table and a heat-map image (also saved as
        ``<key>.png``); ``key`` names both (``acc_matrix``, ``acc_matrix_task_il``)."""
        if not self.enabled:
            return
        png = heatmap_png(matrix, self.run_dir / f"{key}.png", title)
        if self._wandb is None:
            return
        try:
            import wandb

            T = len(matrix)
            cols = ["after_task"] + [f"task_{j}" for j in range(T)]
            rows = [[i] + [matrix[i][j] if j < len(matrix[i]) else None for j in range(T)]
                    for i in range(T)]
            self._wandb.log({f"eval/{key}": wandb.Table(columns=cols, data=rows),
                             f"eval/{key}_heatmap": wandb.Image(str(png)),
                             "task": T - 1})
        except Exception as e:
            self._warn(e)

    def log_model(self, path: Path, name: str, metadata: dict[str, Any]) -> None:
        """The compressed model file as a W&B Artifact (type ``model``) with ``metadata``."""
        if self._wandb is None:
            return
        try:
            import wandb

            art = wandb.Artifact(artifact_name(name), type="model", metadata=metadata,
                                 description="cl_compress model_artifact.pt (load with "
                                             "Strategy.load_artifact / cl_compress.evaluate_artifact)")
            art.add_file(str(path), name=path.name)
            self._wandb.log_artifact(art)
        except Exception as e:
            self._warn(e)

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb is None:
            return
        try:
            for k, v in values.items():
                self._wandb.summary[k] = v
        except Exception as e:
            self._warn(e)

    @property
    def wandb_dir(self) -> str | None:
        return None if self._wandb is None else getattr(self._wandb, "dir", None)

    def describe(self) -> dict[str, Any] | None:
        """Where the W&B run is: mode, path (entity/project/id), url (online) or the offline
        folder and the ``wandb sync`` command that uploads it."""
        run = self._wandb
        if run is None:
            return None
        try:
            offline = _offline(run)
            out: dict[str, Any] = {"mode": "offline" if offline else "online", "id": run.id,
                                   "name": run.name, "group": run.group}
            if offline:
                folder = Path(run.dir).parent
                out |= {"dir": str(folder), "sync": f"wandb sync {folder}"}
            else:
                out |= {"path": "/".join(run.path) if isinstance(run.path, list | tuple) else str(run.path),
                        "url": run.url}
            return out
        except Exception:  # noqa: BLE001  (a description must never fail a run)
            return None

    def finish(self) -> None:
        if not self.enabled:
            return
        self._csv_file.close()
        if self._wandb is not None:
            try:
                self._wandb.finish()
            except Exception as e:
                self._warn(e)


def artifact_name(name: str) -> str:
    """A W&B artifact name from a run name (letters, digits, ``-``, ``_`` and ``.`` only)."""
    return "model-" + re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9_.-]+", "-", name)).strip("-")


def _offline(run: Any) -> bool:
    return bool(getattr(run, "offline", False) or run.settings.mode in ("offline", "dryrun"))


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _wandb_settings(s: TrackerSettings | None = None):
    s = s or TrackerSettings()
    try:
        import wandb

        # login_timeout: should W&B ever show its login prompt, it gives up instead of waiting;
        # system metrics (System tab) and console capture (Logs tab) unless switched off
        return wandb.Settings(silent=True, console="wrap" if s.console else "off",
                              x_disable_stats=not s.system_metrics, login_timeout=1.0)
    except Exception:
        return None
