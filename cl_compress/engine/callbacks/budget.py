"""``BudgetLedger``: the work a run actually did, per task and phase."""

from __future__ import annotations

from typing import Any

from cl_compress.engine.callbacks.base import LoopState, RunCallback


class BudgetLedger(RunCallback):
    """Optimiser steps, passes over the task's training data (epochs) and training samples
    per task and phase, all ranks together; optimiser steps or calibration batches a strategy
    took outside its phases (``Strategy.count_steps``) are kept apart in ``extra_steps``.
    Written to results.json ``budget`` and W&B ``budget/*``; the comparison report holds
    strategies to equal ``train_steps``."""

    def __init__(self, steps_per_task: int | None):
        self.mode = "steps" if steps_per_task else "epochs"
        self.steps_per_task = steps_per_task
        self.per_task: list[dict[str, Any]] = []

    # -- events
    def on_run_start(self, state: LoopState) -> None:
        state.system.run_steps = sum(int(b["train_steps"]) for b in self.per_task)  # resumed

    def on_task_start(self, state: LoopState, t: int) -> None:
        state.task_budget = self.start_task()
        state.strategy.take_extra_steps()  # counts belong to the task they were taken in

    def on_phase_end(self, state, t, k, phase, fit) -> None:
        world = int(getattr(fit, "world_size", 1) or 1)
        self.add_phase(state.task_budget, phase.name, state.system.phase_steps,
                       state.system.phase_samples * world, int(state.experience.train_x.shape[0]))

    def on_task_trained(self, state: LoopState, t: int) -> None:
        state.task_budget["extra_steps"] = state.strategy.take_extra_steps()

    def on_results(self, state: LoopState, results: dict[str, Any]) -> None:
        results["budget"] = self.summary()

    def state_dict(self) -> dict[str, Any]:
        return {"budget": {"per_task": self.per_task}}

    def load_state_dict(self, ck: dict[str, Any]) -> None:
        self.per_task = [dict(t) for t in (ck.get("budget") or {}).get("per_task", [])]

    # -- the ledger
    def start_task(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"train_steps": 0, "samples_seen": 0, "epochs": 0.0,
                                 "phases": {}, "extra_steps": {}}
        self.per_task.append(entry)
        return entry

    @staticmethod
    def add_phase(entry: dict[str, Any], name: str, steps: int, samples: int, n_train: int) -> None:
        ph = entry["phases"].setdefault(name, {"steps": 0, "epochs": 0.0, "samples": 0})
        epochs = samples / max(1, n_train)
        ph["steps"] += steps
        ph["samples"] += samples
        ph["epochs"] = round(ph["epochs"] + epochs, 4)
        entry["train_steps"] += steps
        entry["samples_seen"] += samples
        entry["epochs"] = round(entry["epochs"] + epochs, 4)

    def summary(self) -> dict[str, Any]:
        extra: dict[str, int] = {}
        for t in self.per_task:
            for k, v in t["extra_steps"].items():
                extra[k] = extra.get(k, 0) + v
        steps = [t["train_steps"] for t in self.per_task]
        return {
            "mode": self.mode, "steps_per_task": self.steps_per_task,
            "train_steps": sum(steps), "train_steps_per_task": steps,
            "train_epochs": round(sum(t["epochs"] for t in self.per_task), 4),
            "samples_seen": sum(t["samples_seen"] for t in self.per_task),
            "extra_steps": extra, "per_task": self.per_task,
        }
