"""``ClassILInference``: class-incremental evaluation of a strategy trained task-incrementally
(one head per task, local labels; ``Experience.classes`` maps them to global labels). Opt-in:
the experiment builder adds it for ``benchmark.scenario=class`` with a strategy that declares
``infers_task``. Everything class-IL of a run lives here and in
:mod:`cl_compress.engine.task_inference` (the maths)."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from cl_compress import metrics
from cl_compress.engine.callbacks.base import LoopState, RunCallback, task_seed
from cl_compress.engine.task_il import masked_task_il_row
from cl_compress.engine.task_inference import (
    NegativesLoss,
    TaskInferenceSettings,
    body_features,
    class_il_row,
    feature_basis,
    infer_tasks,
    refit_not_mine,
)
from cl_compress.tracking import keys  # noqa: E402

log = logging.getLogger("cl_compress.engine.loop")


class ClassILInference(RunCallback):
    """Training: self-made negatives train each head's "not mine" output in the same optimiser
    steps (``negatives``). After each task: its class feature statistics and the refit of old
    heads' "not mine" row; the class-IL row (task id inferred among the seen tasks) and the
    task-inference accuracy beside the task-IL row. The class-IL matrix becomes the run's
    ``acc_matrix``; the task-IL one is kept under ``task_il``."""

    def __init__(self, settings: TaskInferenceSettings):
        self.s = settings
        self.C: list[list[float]] = []  # class-IL matrix
        self.TI: list[list[float]] = []  # task-inference accuracy
        self.stats: dict[int, dict[str, torch.Tensor]] = {}  # per-task class feature statistics

    # -- training
    def on_run_start(self, state: LoopState) -> None:
        if self.s.negatives != "none":
            state.system.loss_fn = NegativesLoss(self.s.negatives, float(self.s.negative_weight))

    def on_phase_end(self, state, t, k, phase, fit) -> None:
        if state.system.loss_fn is None:
            return
        world = int(getattr(fit, "world_size", 1) or 1)  # the negatives' share of the same steps
        spent = state.task_budget
        spent["negative_samples"] = spent.get("negative_samples", 0) + state.system.phase_negatives * world

    def on_task_trained(self, state: LoopState, t: int) -> None:
        if self.s.refits or self.s.normalise_scores:
            t0 = time.perf_counter()
            refit_old_heads(state, t, self.stats, self.s)
            state.timing["task_inference_seconds"] = (state.timing.get("task_inference_seconds", 0.0)
                                                      + time.perf_counter() - t0)

    # -- evaluation
    def on_evaluate(self, state: LoopState, t: int) -> None:
        norm = {j: (float(v["score_mean"]), float(v["score_std"]))
                for j, v in self.stats.items() if "score_mean" in v}
        ci, ti = class_il_row(state.model, state.strategy, state.stream.experiences, t, self.s.score,
                              state.train.eval_batch_size, norm)
        self.C.append(ci)
        self.TI.append(ti)
        log.info("task %d class-IL: %s; task inference: %s", t,
                 " ".join(f"{a:.4f}" for a in ci), " ".join(f"{a:.4f}" for a in ti))
        # logged by TaskLogger under the class-IL headline keys (tracking.keys)
        state.matrices["class_il"], state.matrices["task_inference"] = self.C, self.TI

    def on_results(self, state: LoopState, results: dict[str, Any]) -> None:
        """The class-IL matrix is the scenario's figure; the task-IL one goes to ``task_il``."""
        R, C, TI, s = state.R, self.C, self.TI, self.s
        final = TI[-1] if TI else []
        results["scenario"] = "class"
        results["acc_matrix"] = C
        results.update(metrics.summarize(C))
        results["task_il"] = keys.task_il_section(R)
        results["class_il"] = {
            "acc_matrix": C, **metrics.summarize(C), "task_inference_acc": TI,
            "task_inference_final": final, "task_inference_avg": sum(final) / max(1, len(final)),
            "score": s.score, "negatives": s.negatives, "negative_weight": s.negative_weight,
            "refit_old_heads": s.refits, "refit_steps": s.refit_steps if s.refits else 0}

    # -- checkpoint and accounting
    def state_dict(self) -> dict[str, Any]:
        return {"class_il_matrix": self.C, "task_inference_acc": self.TI,
                "task_inference_stats": self.stats}

    def load_state_dict(self, ck: dict[str, Any]) -> None:
        self.C = [list(r) for r in ck.get("class_il_matrix", [])]
        self.TI = [list(r) for r in ck.get("task_inference_acc", [])]
        self.stats = {int(k): dict(v) for k, v in ck.get("task_inference_stats", {}).items()}

    def stored_params(self) -> dict[str, int]:
        """fp32 class feature statistics; the heads' "not mine" rows are part of the heads,
        which every strategy counts already."""
        n = sum(v.numel() for st in self.stats.values() for v in st.values())
        return {"task_inference_params": n} if n else {}


class SharedHeadTaskIL(RunCallback):
    """A class-IL run of a shared-head strategy (naive): after each task, the task-IL row too
    (its logits cut to each task's classes, the task id given), so every strategy of a
    class-IL group reports the same task-IL figures (results.json ``task_il``, W&B
    ``eval/task_il/*``)."""

    def __init__(self):
        self.TIL: list[list[float]] = []

    def on_evaluate(self, state: LoopState, t: int) -> None:
        with state.strategy.task_context(t):
            self.TIL.append(masked_task_il_row(state.model, state.stream.experiences, t,
                                               state.train.eval_batch_size))
        state.matrices["task_il"] = self.TIL

    def on_results(self, state: LoopState, results: dict[str, Any]) -> None:
        # only when every task has its row (a run resumed from an older checkpoint logs none
        # rather than figures over fewer tasks)
        til = keys.complete(self.TIL, state.n_tasks)
        if til:
            results["task_il"] = keys.task_il_section(til)

    def state_dict(self) -> dict[str, Any]:
        return {"task_il_matrix": self.TIL} if self.TIL else {}

    def load_state_dict(self, ck: dict[str, Any]) -> None:
        self.TIL = [list(r) for r in ck.get("task_il_matrix", [])]


def refit_old_heads(state: LoopState, t: int, stats: dict[int, dict[str, torch.Tensor]],
                    s: TaskInferenceSettings) -> None:
    """After task ``t``: store its class feature statistics (under its own, final context),
    then refit every old head's "not mine" row with task ``t``'s training images as
    negatives (``task_inference.refit_not_mine``). Forward passes and refit steps are
    counted in ``budget.extra_steps`` (``task_inference_features``/``_refit``)."""
    model, strategy, exp, train = state.model, state.strategy, state.experience, state.train
    bs = train.eval_batch_size
    n_batches = -(-int(exp.train_x.shape[0]) // bs)
    stats[t] = {}
    if s.normalise_scores:
        _, _, S = infer_tasks(model, strategy, exp.train_x, [t], {t: list(range(model.n_classes(t)))},
                              s.score, bs)
        stats[t] |= {"score_mean": S[0].mean().cpu(), "score_std": S[0].std().cpu()}
        strategy.count_steps("task_inference_features", n_batches * (4 if s.rotations > 1 else 1))
    if not s.refits:
        return
    feats = body_features(model, strategy, exp.train_x, t, bs)
    stats[t] |= feature_basis(feats, s.refit_energy)
    strategy.count_steps("task_inference_features", n_batches)
    for j in range(t):
        neg = body_features(model, strategy, exp.train_x, j, bs)
        strategy.count_steps("task_inference_features", n_batches)
        refit_not_mine(model.head(j), stats[j], neg, s.refit_steps, train.batch_size,
                       s.refit_lr, task_seed(state.seed, t) * 31 + j)
        strategy.count_steps("task_inference_refit", s.refit_steps)
