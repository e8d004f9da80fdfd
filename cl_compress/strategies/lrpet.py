"""LRPET as a continual learner: low-rank projection with energy transfer per task.

Guo et al. (2022), "Compact model training by low-rank projection with energy transfer".
The paper and the authors' code are single-task; the continual form below is this
project's reading, not the authors'.

Every Linear/Conv2d weight of the body is trained with LRPET: optimiser steps alternated
with a projection onto rank ``k`` whose removed energy goes to the kept singular values
(``compress.lowrank.project``), every N steps or at the end of every epoch. Task 0 trains
the body from its initialisation. Each later task ``t`` then depends on ``sharing``:

* ``residual`` (default): a dense residual (initialised at zero) trained on top of the
  frozen weights of tasks ``0..t-1`` with the same alternation; task ``j`` is answered
  with ``sum_{i<=j} U_i V_i``.
* ``independent``: a rank-``k`` model of its own, weights, biases and BatchNorm drawn
  afresh (as ``individual`` does), nothing shared; task ``j`` is answered with
  ``U_j V_j``. Same rank, same stored size per task as ``residual``: the pair separates
  "sharing" from "LRPET itself".

After each task the projected term is stored as thin factors ``U_t V_t`` with the task's
own bias, BatchNorm state and head, so old tasks are untouched (zero forgetting by
construction). Evaluation always uses the stored (projected, factorised) weights.
``mode=truncate`` is the baseline "train dense, truncate by SVD, fine-tune the factors".

Policies: biases, BatchNorm affine parameters and running statistics are per task
(trained dense, initialised from the previous task under ``residual``, stored dense, as in
the authors' code they are never projected); a conv followed by BN is projected in the
BN-rectified space, and after each task the BN statistics are re-estimated for the stored
weights.

Deliberate deviations from the authors' code (canyyang/LRPET,
``ImageClassification/cifar10/cifar10_train.py`` ~175-225): the continual form above;
Linear layers are projected too (their CNN code keeps FC layers dense; their ViT code
projects Linear layers); conv-BN pairs are found by data flow, not by position; one more
projection before storing and a BN re-estimation of the stored weights (their script
evaluates before the projection); no skip of layers with ``sigma_1 < 1e-4`` (a weight
without energy is left as it is). Rank: the same rule as theirs: ``k = int(rank_ratio *
min(out, fan_in))`` equals their ``int(n - n * prun_goal)`` at ``rank_ratio = 1 - prun_goal``
(both truncate n * ratio; e.g. n = 256, prun_goal 0.8: k = 51); ``rank`` sets k exactly.

The truncate baseline fine-tunes its factors at ``finetune_lr_scale * train.lr`` (default 0.1,
as PackNet's retrain): every phase restarts the optimiser and its schedule, so at scale 1 the
fine-tuning would restart at the full lr right after truncation.

Measured (split_fmnist, MLP 784-256-256, default 1000 steps/task, seed 0; see
experiments/results/lrpet-sharing-2026-12-02.md, ``python -m experiments.bench_lrpet
--sharing``): residual 99.28 % vs independent 99.24 % avg acc, both 253,450 stored params
(k = 32): on these easy tasks sharing buys 0.04 points, one seed. Energy transfer: the first
projection of a fresh weight removes ~60 % of its energy (alpha up to 2.5-2.8), so task 0
(and every task under ``independent``) averages 5-6 % removed per projection; a residual
task's projections remove 0.08-0.49 % on average, at most 2.1 % (alpha <= 1.021), and the
last projection of any task removes at most 0.25 %: after the first projection, energy
transfer is nearly idle. Single task (``--single-task``,
experiments/results/lrpet-single-task-<date>.md, the newest): LRPET against
truncate-then-fine-tune at k = 51 (the authors' rule) and k = 8, equal steps and size.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_compress.compress import lowrank
from cl_compress.errors import CheckpointError, ConfigError
from cl_compress.models import ContinualModel, broadcast_norm_buffers
from cl_compress.strategies.base import (
    CompressionStats,
    Phase,
    Strategy,
    StrategyConfig,
    StreamInfo,
    TaskData,
    check_format,
    hp,
)
from cl_compress.strategies.helpers import (
    head_params,
    head_states,
    load_head_states,
    norm_state,
    norm_states_from,
    swapped_norm_state,
)
from cl_compress.strategies.registry import register

_BN = nn.modules.batchnorm._BatchNorm


class TaskResidualLayer(nn.Module):
    """A Linear/Conv2d whose weight for task ``j`` is the sum of stored per-task terms
    ``0..j`` (rank-``k`` factors, or dense when ``k`` is None). While task ``t`` trains,
    the weight is the frozen sum of terms ``0..t-1`` plus the trainable term: the dense
    ``delta``, or ``fu @ fv`` in the fine-tuning phase of ``mode=truncate``."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, n_tasks: int, k: int | None,
                 with_factors: bool, independent: bool = False):
        super().__init__()
        self.independent = independent  # task j's weight is term j alone (no sum)
        w = layer.weight.detach()
        self.shape = tuple(w.shape)
        self.k = k
        self.conv = None if isinstance(layer, nn.Linear) else dict(
            stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
            groups=layer.groups)
        out, fan = w.shape[0], w[0].numel()
        self.delta = nn.Parameter(w.clone())
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone())
        if k is None:
            self.register_buffer("stored", torch.zeros(n_tasks, out, fan))
        else:
            self.register_buffer("stored_u", torch.zeros(n_tasks, out, k))
            self.register_buffer("stored_v", torch.zeros(n_tasks, k, fan))
        if self.bias is not None:
            self.register_buffer("stored_bias", torch.zeros(n_tasks, out))
        if with_factors and k is not None:
            self.fu = nn.Parameter(torch.zeros(out, k))
            self.fv = nn.Parameter(torch.zeros(k, fan))
        self.train_task = 0
        self.eval_task: int | None = None
        self.use_factors = False
        self._cache: tuple[Any, Tensor] | None = None

    @torch.no_grad()
    def reset(self) -> None:
        """A fresh initialisation of the trainable weight and bias, as ``nn.Linear`` and
        ``nn.Conv2d`` draw it (``sharing=independent``: every task starts from scratch)."""
        nn.init.kaiming_uniform_(self.delta, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.delta[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def thin_factors(self) -> tuple[Tensor, Tensor, Tensor | None, dict | None] | None:
        """``(U, V, bias, conv)`` of the weight answering for ``eval_task`` ``j``, the stored
        terms stacked into one pair (``independent``: term ``j`` alone); None while training,
        for dense terms (``k`` None) or a grouped conv (``cl_compress.engine.flops``)."""
        if self.eval_task is None or self.k is None:
            return None
        j = self.eval_task
        terms = [j] if self.independent else range(j + 1)
        u = torch.cat([self.stored_u[i] for i in terms], 1)
        v = torch.cat([self.stored_v[i] for i in terms], 0)
        b = None if self.bias is None else self.stored_bias[j]
        conv = None
        if self.conv is not None:
            if self.conv["groups"] != 1:
                return None
            conv = {k: self.conv[k] for k in ("stride", "padding", "dilation")}
            conv["kernel"] = tuple(self.shape[1:])
        return u, v, b, conv

    def term(self, i: int) -> Tensor:
        return self.stored[i] if self.k is None else self.stored_u[i] @ self.stored_v[i]

    @torch.no_grad()
    def frozen(self, j: int) -> Tensor:
        """``sum_{i<=j}`` of the stored terms, always summed in the same order (cached);
        term ``j`` alone when the layer is ``independent``."""
        key = (j, self.delta.device)
        if self._cache is None or self._cache[0] != key:
            w = self.term(j if self.independent else 0)
            for i in range(1, 0 if self.independent else j + 1):
                w = w + self.term(i)
            self._cache = (key, w.reshape(self.shape))
        return self._cache[1]

    @torch.no_grad()
    def store(self, task: int, u: Tensor | None, v: Tensor | None, dense: Tensor | None) -> None:
        if self.k is None:
            self.stored[task].copy_(lowrank.as_matrix(dense))
        else:
            self.stored_u[task].copy_(u)
            self.stored_v[task].copy_(v)
        if self.bias is not None:
            self.stored_bias[task].copy_(self.bias)
        self._cache = None

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if self.eval_task is not None:
            w = self.frozen(self.eval_task)
            b = None if self.bias is None else self.stored_bias[self.eval_task]
        else:
            cur = lowrank.reconstruct(self.fu, self.fv, self.shape) if self.use_factors else self.delta
            shared = self.train_task > 0 and not self.independent
            w = self.frozen(self.train_task - 1) + cur if shared else cur
            b = self.bias
        return F.linear(x, w, b) if self.conv is None else F.conv2d(x, w, b, **self.conv)


@dataclass
class LRPETConfig(StrategyConfig):
    mode: str = hp("lrpet", choices=("lrpet", "truncate"),
                   doc="lrpet: projection (+energy transfer) during training; truncate: train "
                       "dense, truncate by SVD, fine-tune the factors (baseline)")
    sharing: str = hp("residual", choices=("residual", "independent"),
                      doc="residual: task t>0 trains a rank-k residual on the frozen sum of "
                          "tasks <t (this project's continual reading); independent: every task "
                          "trains its own rank-k model from a fresh initialisation (no sharing)")
    rank: int = hp(0, 0, None, doc="explicit rank k per layer (capped at full rank); 0: rank_ratio")
    rank_ratio: float = hp(0.125, 0, 1, low_open=True, doc="k = ratio * min(out, in*kh*kw)")
    project_every: int = hp(0, 0, None, doc="project every N optimiser steps; 0: every epoch end")
    energy_transfer: bool = hp(True, choices=(True, False), doc="rescale kept singular values")
    redu_fac: float = hp(0.0, 0, 1, high_open=True, doc="rho: tail scale during training")
    layers: str = hp("all", choices=("all", "linear", "conv"), doc="layer types made low-rank")
    bn_rectify: bool = hp(True, choices=(True, False), doc="project conv+BN in diag(a) W space")
    finetune_epochs: int = hp(1, 1, None, doc="mode=truncate: epochs of factor fine-tuning")
    finetune_lr_scale: float = hp(0.1, 0.0, 1.0, low_open=True,
                                  doc="mode=truncate: fine-tuning lr = scale * train.lr (the "
                                      "phase restarts its schedule; 1: restart at the full lr)")
    bn_recalibrate: int = hp(20, 0, None, doc="batches to re-estimate BN statistics of the "
                                              "stored weights after each task; 0: off")

    def validate(self) -> None:
        for name in ("rank", "project_every", "finetune_epochs", "bn_recalibrate"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"strategy.{name}={v!r} must be an integer")


def _epoch_projector(strategy: LRPET):
    """A callback projecting at the end of every epoch (the authors' CIFAR schedule);
    Lightning is imported here, not when the strategy module is."""
    import lightning as L

    class _EpochProjector(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            strategy.project_all()

    return _EpochProjector()


@register("lrpet")
class LRPET(Strategy):
    """Per-task rank-k residuals trained by low-rank projection with energy transfer."""

    description = "low-rank projection + energy transfer; per-task rank-k residual factors"
    scenarios = ("task", "class")  # class: the task id is inferred at test time
    infers_task = True
    zero_forgetting = True
    Config = LRPETConfig
    # searched: the rank ratio, the tail scale rho and the projection period; fixed: `mode`
    # (truncate is the baseline, not a setting of LRPET), the method's components and BN knobs
    tune_space = {"rank_ratio": {"low": 0.03, "high": 0.5, "log": True}, "rank": None,
                  "project_every": {"choices": [0, 10, 50]}, "mode": None, "sharing": None,
                  "energy_transfer": None, "layers": None, "bn_rectify": None,
                  "finetune_epochs": None, "finetune_lr_scale": None, "bn_recalibrate": None}

    def __init__(self, cfg: LRPETConfig, train):
        super().__init__(cfg, train)
        self.cfg: LRPETConfig = cfg
        self.layers: dict[str, TaskResidualLayer] = {}
        self.bn_of: dict[str, _BN] = {}
        # per task: affine parameters and running statistics of every BatchNorm of the body
        self.norm_states: dict[int, dict[str, Tensor]] = {}
        self.n_done = 0
        self.steps = 0
        # wall time of each phase's fit (with projections) and of the projections alone
        self.timing: dict[str, Any] = {"projection_seconds": 0.0, "projections": 0,
                                       "phase_seconds": {}, "phase_epochs": {}}
        self.removed: dict[str, float] = {}  # energy fraction beyond k at the last projection
        self.alpha: dict[str, float] = {}  # energy-transfer factor at the last projection
        # per task, per layer: count and sums/extremes of alpha and of the removed energy
        # fraction over every projection (``projection_summary`` turns them into means)
        self.proj_stats: dict[str, dict[str, dict[str, float]]] = {}
        self.task = 0
        self.dirty = False
        self._t0 = 0.0

    # --- model surgery -----------------------------------------------------------------
    def setup(self, model: ContinualModel, info: StreamInfo) -> None:
        super().setup(model, info)
        body = model.body
        pairs = lowrank.conv_bn_pairs(body, info.input_shape)
        kinds = {"all": (nn.Linear, nn.Conv2d), "linear": (nn.Linear,), "conv": (nn.Conv2d,)}
        targets = [(n, m) for n, m in body.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
        for name, m in body.named_modules():
            own = list(m.parameters(recurse=False))
            if own and type(m) not in (nn.Linear, nn.Conv2d) and not isinstance(m, _BN):
                raise ConfigError(f"strategy=lrpet cannot handle {type(m).__name__} ({name!r}) "
                                  f"in the body; use model=mlp, cnn, resnet18 or cacl_net")
            if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
                raise ConfigError(f"strategy=lrpet needs padding_mode='zeros' ({name!r})")
        for name, m in targets:
            k = None
            if isinstance(m, kinds[self.cfg.layers]):
                k = lowrank.choose_rank(m.weight.shape, self.cfg.rank, self.cfg.rank_ratio)
            layer = TaskResidualLayer(m, info.n_tasks, k, self.cfg.mode == "truncate",
                                      independent=self.cfg.sharing == "independent")
            parent, _, child = name.rpartition(".")
            setattr(body.get_submodule(parent) if parent else body, child, layer)
            self.layers[name] = layer
            if name in pairs and self.cfg.bn_rectify:
                self.bn_of[name] = pairs[name]

    def _bns(self) -> dict[str, _BN]:
        return {n: m for n, m in self.net.body.named_modules() if isinstance(m, _BN)}

    # --- training ----------------------------------------------------------------------
    def phases(self, task: int) -> list[Phase]:
        if self.cfg.mode == "lrpet":
            return [Phase.default(self.train, "lrpet")]
        return [Phase.default(self.train, "dense"),
                Phase.default(self.train, "finetune", epochs=self.cfg.finetune_epochs,
                              lr=self.train.lr * self.cfg.finetune_lr_scale)]

    @torch.no_grad()
    def before_task(self, task: int, data: TaskData) -> None:
        self.task = task
        independent = self.cfg.sharing == "independent"
        for layer in self.layers.values():
            layer.train_task, layer.eval_task, layer.use_factors = task, None, False
            if task > 0 and independent:
                layer.reset()  # a model of its own, initialised afresh
            elif task > 0:
                layer.delta.zero_()  # the residual of a new task starts at zero
        if task > 0 and independent:  # BN of the task's own model (the old ones are stored)
            for bn in self._bns().values():
                bn.reset_parameters()

    def before_phase(self, task: int, phase: Phase, data: TaskData) -> None:
        factors = phase.name == "finetune"
        for name, layer in self.layers.items():
            if factors and layer.k is not None:  # baseline: truncate the dense weight by SVD
                self.removed[name] = lowrank.tail_energy(
                    torch.linalg.svdvals(lowrank.as_matrix(layer.delta.detach()).double()), layer.k)
                u, v = lowrank.factorize(layer.delta, layer.k)
                layer.fu.data.copy_(u)
                layer.fv.data.copy_(v)
                layer.use_factors = True
            layer.delta.requires_grad_(not layer.use_factors)
            if hasattr(layer, "fu"):
                layer.fu.requires_grad_(layer.use_factors)
                layer.fv.requires_grad_(layer.use_factors)
        self.steps = 0
        self._t0 = time.perf_counter()

    def after_phase(self, task: int, phase: Phase, data: TaskData) -> None:
        sec, ep = self.timing["phase_seconds"], self.timing["phase_epochs"]
        sec[phase.name] = sec.get(phase.name, 0.0) + time.perf_counter() - self._t0
        epochs = phase.epochs if phase.steps is None else phase.steps / max(1, len(data.train_loader()))
        ep[phase.name] = ep.get(phase.name, 0) + epochs

    def after_optimizer_step(self, step: int) -> None:
        self.steps += 1
        self.dirty = True
        every = self.cfg.project_every
        if self.cfg.mode == "lrpet" and every > 0 and self.steps % every == 0:
            self.project_all()

    def callbacks(self) -> list:
        return [_epoch_projector(self)] if self.cfg.mode == "lrpet" and self.cfg.project_every == 0 else []

    @torch.no_grad()
    def project_all(self) -> None:
        """One LRPET step: project every low-rank layer's trainable term onto rank k."""
        if self.bn_of:  # the BN-rectified projection reads the running statistics: under DDP
            broadcast_norm_buffers(self.net)  # each rank's last update is its own; rank 0's win
        t0, threads = time.perf_counter(), torch.get_num_threads()
        torch.set_num_threads(1)  # small SVDs: extra threads only contend (10x slower on 2 cores)
        try:
            for name, layer in self.layers.items():
                if layer.k is None or layer.use_factors:
                    continue
                bn = self.bn_of.get(name)
                rho = self.cfg.redu_fac
                w, s = lowrank.project(
                    layer.delta, layer.k, transfer=self.cfg.energy_transfer, rho=rho,
                    row_scale=None if bn is None else lowrank.bn_row_scale(bn), return_spectrum=True)
                layer.delta.copy_(w)
                self.removed[name] = lowrank.tail_energy(s, layer.k)
                alpha = lowrank.transfer_alpha(s, layer.k, rho) if self.cfg.energy_transfer else 1.0
                self._record(name, alpha, lowrank.removed_energy(s, layer.k, rho))
        finally:
            torch.set_num_threads(threads)
        self.timing["projection_seconds"] += time.perf_counter() - t0
        self.timing["projections"] += 1
        self.dirty = False

    def _record(self, name: str, alpha: float, removed: float) -> None:
        """Add one projection's ``alpha`` and removed energy fraction to the running
        per-task, per-layer statistics."""
        self.alpha[name] = alpha
        st = self.proj_stats.setdefault(str(self.task), {}).get(name)
        if st is None:
            st = self.proj_stats[str(self.task)][name] = {
                "count": 0, "alpha_sum": 0.0, "alpha_min": alpha, "alpha_max": alpha,
                "removed_sum": 0.0, "removed_max": removed, "alpha_first": alpha,
                "removed_first": removed}
        st["count"] += 1
        st["alpha_sum"] += alpha
        st["removed_sum"] += removed
        st["alpha_min"], st["alpha_max"] = min(st["alpha_min"], alpha), max(st["alpha_max"], alpha)
        st["removed_max"] = max(st["removed_max"], removed)
        st["alpha_last"], st["removed_last"] = alpha, removed

    def projection_summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{task: {layer: {count, alpha_mean, alpha_min, alpha_max, alpha_first, alpha_last,
        removed_mean, removed_max, removed_first, removed_last}}}`` over every LRPET
        projection of the task (epoch-end or every N steps, and the final one before
        storing; the first one of a freshly initialised weight removes most).

        ``removed``: the fraction of the (BN-rectified) weight's energy the projection takes
        from the tail, ``(1 - rho^2) * ||s[k:]||^2 / ||s||^2``. ``alpha``: the factor the kept
        energy is multiplied by (with energy transfer and ``rho = 0``: ``1 / (1 - removed)``;
        1 without energy transfer)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for task, layers in self.proj_stats.items():
            out[task] = {}
            for name, st in layers.items():
                n = st["count"]
                out[task][name] = {"count": n, "alpha_mean": st["alpha_sum"] / n,
                                   "alpha_min": st["alpha_min"], "alpha_max": st["alpha_max"],
                                   "alpha_first": st["alpha_first"], "alpha_last": st["alpha_last"],
                                   "removed_mean": st["removed_sum"] / n,
                                   "removed_max": st["removed_max"],
                                   "removed_first": st["removed_first"],
                                   "removed_last": st["removed_last"]}
        return out

    @torch.no_grad()
    def after_task(self, task: int, data: TaskData) -> None:
        # Evaluate what is stored: a last projection if steps were taken since the previous
        # one, then the authors' decomposition (truncated SVD, sqrt(sigma) in both factors).
        if self.cfg.mode == "lrpet" and self.dirty:
            self.project_all()
        for layer in self.layers.values():
            if layer.k is None:
                layer.store(task, None, None, layer.delta)
            elif layer.use_factors:
                layer.store(task, layer.fu, layer.fv, None)
            else:
                layer.store(task, *lowrank.factorize(layer.delta, layer.k), None)
        self._recalibrate_bn(task, data)
        self.norm_states[task] = norm_state(self._bns())  # affine + running statistics
        self.n_done = task + 1

    @torch.no_grad()
    def _recalibrate_bn(self, task: int, data: TaskData) -> None:
        """Re-estimate the BN running statistics of the stored (projected) weights.

        A projection moves the weights after the last BN update, so the running statistics
        are stale for the stored weights (the authors' CIFAR script evaluates before the
        projection, which hides this). Off with ``bn_recalibrate=0``.
        """
        bns, n = list(self._bns().values()), self.cfg.bn_recalibrate
        if not bns or n == 0:
            return
        model = self.net
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches below
        for layer in self.layers.values():
            layer.eval_task = task
        was_training = model.training
        model.train()
        device = next(model.parameters()).device
        try:
            for i, (x, _, _) in enumerate(data.train_loader()):
                if i == n:
                    break
                model.body(x.to(device))
                self.count_steps("bn_calibration")  # forward only, no optimiser step
        finally:
            model.train(was_training)
            for bn, m in zip(bns, momenta):
                bn.momentum = m
            for layer in self.layers.values():
                layer.eval_task = None
        broadcast_norm_buffers(model)  # under DDP: every rank stores rank 0's statistics

    # --- evaluation ----------------------------------------------------------------------
    @contextlib.contextmanager
    def task_context(self, task: int):
        state = self.norm_states[task]
        for layer in self.layers.values():
            layer.eval_task = task
        try:
            with swapped_norm_state(self._bns(), state):
                yield
        finally:
            for layer in self.layers.values():
                layer.eval_task = None

    # --- accounting and persistence ------------------------------------------------------
    def compression_stats(self) -> CompressionStats:
        t = self.n_done
        body = t * sum((la.stored[0].numel() if la.k is None else lowrank.factor_params(la.shape, la.k))
                       + (0 if la.bias is None else la.shape[0]) for la in self.layers.values())
        bn = sum(v.numel() for s in self.norm_states.values() for v in s.values())
        heads = head_params(self.net, t)
        n = body + bn + heads
        return CompressionStats(n, 32 * n, {"body_params": body, "bn_params": bn,
                                            "head_params": heads, "ranks": self.ranks()})

    def ranks(self) -> dict[str, int | None]:
        return {name: layer.k for name, layer in self.layers.items()}

    def export_artifact(self) -> dict[str, Any]:
        t = self.n_done
        layers = {}
        for name, la in self.layers.items():
            entry: dict[str, Any] = {"kind": "linear" if la.conv is None else "conv2d",
                                     "shape": list(la.shape), "k": la.k}
            if la.conv is not None:
                entry["conv"] = {key: list(v) if isinstance(v, tuple) else v
                                 for key, v in la.conv.items()}
            if la.k is None:
                entry["dense"] = la.stored[:t].clone()
            else:
                entry["u"], entry["v"] = la.stored_u[:t].clone(), la.stored_v[:t].clone()
            if la.bias is not None:
                entry["bias"] = la.stored_bias[:t].clone()
            layers[name] = entry
        return {"format": "lrpet-factors-fp32", "tasks": t, "sharing": self.cfg.sharing,
                "layers": layers, "bn": [self.norm_states[j] for j in sorted(self.norm_states)],
                "heads": head_states(self.net, t)}

    @torch.no_grad()
    def load_artifact(self, artifact: dict[str, Any]) -> None:
        """The inverse of :meth:`export_artifact`; ``heads`` may also be the flat
        ``{"<task>.<key>": tensor}`` dict of artifacts written before the shared helper."""
        check_format(artifact, "lrpet-factors-fp32", self.name)
        t = int(artifact["tasks"])
        sharing = artifact.get("sharing", "residual")  # artifacts before the option: residual
        if sharing != self.cfg.sharing:
            raise CheckpointError(f"artifact stores sharing={sharing!r} factors, this strategy has "
                                  f"sharing={self.cfg.sharing!r}: evaluate it with the run's own "
                                  f"strategy settings")
        for name, entry in artifact["layers"].items():
            la = self.layers[name]
            if entry["k"] != la.k or list(entry["shape"]) != list(la.shape):
                raise CheckpointError(f"artifact layer {name} has rank {entry['k']} and shape "
                                      f"{entry['shape']}, this model {la.k} and {list(la.shape)}: "
                                      f"evaluate it with the run's own strategy settings")
            if la.k is None:
                la.stored[:t].copy_(entry["dense"])
            else:
                la.stored_u[:t].copy_(entry["u"])
                la.stored_v[:t].copy_(entry["v"])
            if la.bias is not None:
                la.stored_bias[:t].copy_(entry["bias"])
            la._cache = None
        self.norm_states = norm_states_from(artifact, "bn")
        load_head_states(self.net, artifact["heads"])
        self.n_done = t

    def task_metrics(self, task: int) -> dict[str, float]:
        # layers by their path in the model (``body.<path>``), as every strategy names them
        out: dict[str, float] = {f"rank/body.{n}": float(k) for n, k in self.ranks().items() if k}
        out |= {f"energy_removed/body.{n}": e for n, e in self.removed.items()}
        out |= {f"alpha/body.{n}": a for n, a in self.alpha.items()}
        return out

    def extra_results(self) -> dict[str, Any]:
        t = self.timing
        per_epoch = {n: s / max(1, t["phase_epochs"][n]) for n, s in t["phase_seconds"].items()}
        return {"mode": self.cfg.mode, "sharing": self.cfg.sharing, "ranks": self.ranks(),
                "seconds_per_epoch": per_epoch, **t, "bn_rectified": sorted(self.bn_of),
                "projection_stats": self.projection_summary()}

    def state_dict(self) -> dict[str, Any]:
        # "bn_states": the checkpoint layout of earlier versions (a list, one entry per task),
        # unchanged, so resuming and the pinned state fingerprints stay valid
        return {"n_done": self.n_done, "timing": self.timing,
                "bn_states": [self.norm_states[t] for t in sorted(self.norm_states)],
                "proj_stats": self.proj_stats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_done = int(state["n_done"])
        self.norm_states = norm_states_from(state, "bn_states")
        self.timing = dict(state["timing"])
        self.proj_stats = {t: {n: dict(st) for n, st in la.items()}
                           for t, la in state.get("proj_stats", {}).items()}

