"""The names accuracy, forgetting and BWT are logged under: one meaning per key, in every
strategy of a scenario, so a W&B group compares runs key by key.

Each run has one *headline* accuracy matrix, the figure of its scenario:

* task-IL run (``benchmark.scenario=task``): ``R``, the task id given;
* class-IL run (``benchmark.scenario=class``): the class-IL matrix, the task id never given
  (naive: its shared head; a strategy that answers under a task context: the task id is
  inferred at test time, :mod:`cl_compress.engine.task_inference`).

Keys (``j``, ``i``: 0-based task numbers, as everywhere in the logs and results)::

    eval/acc/task_{j}          headline accuracy on task j after task i (W&B x axis ``task`` = i)
    eval/acc/avg_seen          mean of eval/acc/task_{j} over the seen tasks
    eval/acc/current           headline accuracy on the task just trained
    eval/forgetting/task_{j}   max-based forgetting of task j so far (j < i)
    stream/forgetting          mean of eval/forgetting/task_{j} (the forgetting curve)
    stream/bwt                 backward transfer so far
    eval/task_il/...           class-IL runs only: the same figures with the task id given
    stream/task_il/...         (every strategy, naive included: its logits cut to the task's
                               classes), so task-IL and class-IL never share a name
    eval/task_inference/...    class-IL runs of a task-inferring strategy: how often the
                               task id was inferred right
    final/...                  summary: headline avg_acc, forgetting, bwt, plasticity;
    final/task_il/...          the task-id-given figures of a class-IL run

A task-IL run has no ``task_il`` keys: its headline *is* task-IL, and its group
(``<benchmark>-task``) never holds class-IL runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cl_compress import metrics

Matrix = list[list[float]]
ACC = "eval/acc"
TASK_IL = "task_il"
FORGETTING = "eval/forgetting"
TASK_INFERENCE = "eval/task_inference"
SCENARIO_NAMES = {"task": "task-IL", "class": "class-IL"}


@dataclass
class Views:
    """The matrices a run measures: ``acc`` (headline, the scenario's figure), ``task_il``
    (class-IL runs: the task id given) and ``task_inference`` (class-IL runs of a
    task-inferring strategy: the share of each task's test samples routed to it)."""

    scenario: str
    acc: Matrix
    task_il: Matrix | None = None
    task_inference: Matrix | None = None

    @property
    def name(self) -> str:
        """``task-IL`` or ``class-IL``: the headline's name in the terminal and report."""
        return SCENARIO_NAMES.get(self.scenario, self.scenario)


def views(scenario: str, R: Matrix, class_il: Matrix | None = None,
          task_inference: Matrix | None = None, masked_task_il: Matrix | None = None) -> Views:
    """The loop's matrices under their meaning. ``R``: evaluated per task (under the task's
    context); ``class_il``: task id inferred (task-inferring strategies in a class-IL run,
    whose ``R`` is then task-IL); ``masked_task_il``: a shared-head strategy's logits cut to
    each task's classes (its ``R`` is then class-IL)."""
    if class_il is not None:  # trained as task-IL (its stream says "task"), judged class-IL
        return Views("class", class_il, task_il=R, task_inference=task_inference)
    if scenario != "class":
        return Views(scenario, R)
    return Views(scenario, R, task_il=complete(masked_task_il, len(R)))


def complete(M: Matrix | None, n_rows: int) -> Matrix | None:
    """``M`` when it has a row for each of ``n_rows`` tasks, else None: a run resumed from a
    checkpoint written before a shared head's task-IL rows were recorded logs no task-IL
    figures rather than figures over fewer tasks."""
    return M if M and len(M) == n_rows else None


def accuracy_metrics(v: Views, t: int) -> dict[str, float]:
    """Every accuracy/forgetting figure after task ``t`` (history rows at ``task`` = t)."""
    seen = [row[:t + 1] for row in v.acc[:t + 1]]
    row = seen[t]
    m: dict[str, float] = {f"{ACC}/task_{j}": float(a) for j, a in enumerate(row)}
    m[f"{ACC}/avg_seen"] = sum(row) / len(row)
    m[f"{ACC}/current"] = float(row[t])
    m |= _forgetting(FORGETTING, "stream", seen, t)
    if v.task_il is not None:
        til = [r[:t + 1] for r in v.task_il[:t + 1]]
        m |= {f"eval/{TASK_IL}/acc/task_{j}": float(a) for j, a in enumerate(til[t])}
        m[f"eval/{TASK_IL}/avg_seen"] = sum(til[t]) / len(til[t])
        m |= _forgetting(f"eval/{TASK_IL}/forgetting", f"stream/{TASK_IL}", til, t)
    if v.task_inference is not None:
        ti = v.task_inference[t]
        m |= {f"{TASK_INFERENCE}/task_{j}": float(a) for j, a in enumerate(ti)}
        m[f"{TASK_INFERENCE}/avg_seen"] = sum(ti) / len(ti)
    return m


def _forgetting(per_task: str, stream: str, M: Matrix, t: int) -> dict[str, float]:
    if t == 0:
        return {}
    m = {f"{per_task}/task_{j}": max(M[k][j] for k in range(j, t)) - M[t][j] for j in range(t)}
    m[f"{stream}/forgetting"] = metrics.forgetting(M)
    m[f"{stream}/bwt"] = metrics.backward_transfer(M)
    return m


def summary_metrics(results: dict[str, Any]) -> dict[str, float]:
    """``final/*`` of a results.json: headline figures, and ``final/task_il/*`` plus
    ``final/task_inference_avg`` in a class-IL run."""
    out = {f"final/{k}": results[k] for k in ("avg_acc", "bwt", "forgetting", "plasticity")
           if isinstance(results.get(k), int | float)}
    til = results.get("task_il") or {}
    out |= {f"final/{TASK_IL}/{k}": v for k, v in til.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
    ci = results.get("class_il") or {}
    if isinstance(ci.get("task_inference_avg"), int | float):
        out["final/task_inference_avg"] = ci["task_inference_avg"]
    return out


def task_il_section(M: Matrix) -> dict[str, Any]:
    """results.json ``task_il`` of a class-IL run (the task id given)."""
    return {"acc_matrix": M, **metrics.summarize(M)}


def terminal_line(v: Views, t: int) -> str:
    """The accuracies of the per-task terminal line, each named by its meaning."""
    row = v.acc[t]
    text = (f"{v.name} avg {sum(row) / len(row):.4f} over {len(row)} seen "
            f"[{' '.join(f'{a:.4f}' for a in row)}]")
    if v.task_il is not None:
        til = v.task_il[t]
        text += f"; task-IL (task id given) avg {sum(til) / len(til):.4f}"
    if v.task_inference is not None:
        ti = v.task_inference[t]
        text += f"; task inference {sum(ti) / len(ti):.4f}"
    return text
