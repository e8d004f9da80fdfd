"""``TaskLogger``: W&B and metrics.csv through a :class:`cl_compress.tracking.Tracker`."""

from __future__ import annotations

from typing import Any

from cl_compress import metrics
from cl_compress.engine.callbacks.base import LoopState, RunCallback
from cl_compress.tracking import keys


class TaskLogger(RunCallback):
    """After each task: its metrics (``eval/*``, ``stream/*``, ``compress/*``, ``budget/*``,
    ``time/*`` and what other callbacks put in ``state.task_metrics``) and the accuracy
    chart. At the end (rank 0): the accuracy matrices, the model artifact and the summary;
    results.json ``wandb`` says where the run went."""

    def __init__(self, tracker):
        self.tracker = tracker

    def on_task_end(self, state: LoopState, t: int) -> None:
        self.tracker.log_experience(t, task_metrics(state, t))
        self.tracker.log_accuracy_chart(state.views().acc)

    def on_run_end(self, state: LoopState, results: dict[str, Any]) -> None:
        from cl_compress.rundir.rank import is_rank_zero

        if not is_rank_zero():
            return
        tr, s, stream = self.tracker, state.strategy, state.stream
        primary, R = results["acc_matrix"], state.R
        class_il = results.get("class_il")
        if class_il:
            tr.log_matrix(R, f"{s.name} on {stream.name} (task-IL, task id given)",
                          key="acc_matrix_task_il")
            tr.log_matrix(primary, f"{s.name} on {stream.name} (class-IL, task id "
                                   f"inferred by {class_il['score']})")
        else:
            tr.log_matrix(R, f"{s.name} on {stream.name} ({stream.scenario}-IL)")
        comp = results["compression"]
        summary = metrics.summarize(primary)
        tr.log_model(state.run_dir / comp["artifact"], name=tr.name or s.label, metadata={
            "format": state.artifact_format, "strategy": s.name, "method": s.label,
            "strategy_config": results["strategy_config"], "benchmark": stream.name,
            "scenario": results["scenario"], "n_tasks": stream.n_tasks, "seed": state.seed,
            "sha256": results["artifact_sha256"], "avg_acc": summary["avg_acc"],
            "final_acc_row": primary[-1], "task_il_final_row": R[-1], **{k: comp[k] for k in (
                "stored_params", "stored_bits", "bits_per_param", "individual_bits",
                "ratio_vs_individual", "model_bytes")},
            "load": "python -m cl_compress.evaluate_artifact <run_dir>"})
        results["wandb"] = tr.describe()
        budget, inference = results["budget"], results["inference"]
        tr.summary(keys.summary_metrics(results)
                   | {f"final/compress/{k}": v for k, v in comp.items() if isinstance(v, int | float)}
                   | {f"budget/{k}": v for k, v in budget.items() if isinstance(v, int | float)}
                   | {f"final/inference/flops/task_{t}": v
                      for t, v in enumerate(inference.get("flops_per_task", []))}
                   | {f"budget/extra_steps/{k}": v for k, v in budget["extra_steps"].items()})


def task_metrics(state: LoopState, t: int) -> dict[str, float]:
    """The metrics of task ``t``'s log line (metrics.csv and W&B)."""
    strategy, spent, timing = state.strategy, state.task_budget, state.timing
    stats = state.compression_stats()
    # accuracy, forgetting and BWT under keys of one meaning each (headline of the scenario,
    # task-IL figures of a class-IL run, task inference)
    m: dict[str, float] = keys.accuracy_metrics(state.views(), t)
    m["compress/stored_params"] = stats.stored_params
    m["compress/stored_bits"] = stats.stored_bits
    # against the t + 1 plain individual models that answer for the tasks seen so far (the
    # final figure, against all T, is in the summary and results.json)
    m["compress/ratio_vs_individual"] = metrics.compression_ratio(state.seen_reference_bits[t],
                                                                  stats.stored_bits)
    m |= {f"compress/{k}": float(v) for k, v in strategy.task_metrics(t).items()}
    m["eval/acc_before_compression"] = state.acc_before[t]
    m["budget/train_steps"] = spent["train_steps"]
    m["budget/epochs"] = spent["epochs"]
    m["budget/samples_seen"] = spent["samples_seen"]
    m |= {f"budget/steps/{name}": ph["steps"] for name, ph in spent["phases"].items()}
    m |= {f"budget/extra_steps/{k}": v for k, v in spent["extra_steps"].items()}
    if "negative_samples" in spent:
        m["budget/negative_samples"] = spent["negative_samples"]
    m |= state.task_metrics
    # this task's wall time, and the run's totals so far
    m["time/task_seconds"] = timing["task_seconds"][-1]
    m |= {f"time/{k}": float(timing[k]) for k in ("train_seconds", "strategy_seconds",
                                                  "eval_seconds", "elapsed_seconds") if k in timing}
    return m
