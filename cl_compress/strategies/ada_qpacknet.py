"""Ada-QPacknet (Pietroń, Żurek, Faber, Corizzo, ECAI 2023): PackNet sub-networks with an
adaptive per-layer sparsity and an adaptive bit-width for each task's own weights.

Per task ``t`` (on top of :class:`~cl_compress.strategies.packnet.PackNet`):

1. claim every free weight (re-initialised like a fresh layer, as the authors do) and train;
2. **sparsity search**: ``population`` candidate vectors of per-layer prune ratios drawn from
   ``U[v_min, v_max]`` (seeded, so every DDP rank draws the same); each candidate prunes the
   trained weights by magnitude, fine-tunes ``search_epochs`` and is scored on held-out data
   from the task's training split with ``fitness = w * acc + (1 - w) * pruned_fraction``;
   the fittest ratios prune the real network, which is then retrained;
3. **bit-width search**: the task's own weights of every layer are quantised (1-D k-means
   codebook, or linear symmetric/asymmetric, one codebook/scale per layer) starting from 64
   clusters (6 bits; 8 bits for linear) and the bit-width is lowered while the held-out
   accuracy stays within ``tolerance`` points of the float sub-network (the authors' rule);
4. the dequantised values replace the task's weights and are frozen: what is evaluated is
   exactly what is stored (packed codes + codebooks + the packed owner index).

Task ``j`` is answered with the dequantised weights of tasks ``<= j``, its own biases and
normalisation state (stored fp32 per task) and head ``j``. The authors' snapshot retrains each
candidate from a random re-initialisation with a per-batch prune (which makes its masks random);
here candidates are scored after pruning the trained weights, which is the method as described.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compress import masks, quant
from ..errors import ConfigError
from ..models import ContinualModel
from .base import CompressionStats, Phase, StrategyConfig, TaskData, build_optimizer, check_format, hp
from .packnet import PackNet, _clone, _latest
from .registry import register


@dataclass
class AdaQPacknetConfig(StrategyConfig):
    v_min: float = hp(0.4, 0.0, 1.0, high_open=True, doc="lowest per-layer prune ratio searched")
    v_max: float = hp(0.7, 0.0, 1.0, low_open=True, high_open=True, doc="highest prune ratio")
    population: int = hp(4, 1, 256, doc="candidate prune-ratio vectors per task")
    search_epochs: int = hp(1, 0, None, doc="fine-tuning epochs per candidate before scoring")
    fitness_acc_weight: float = hp(0.8, 0.0, 1.0, doc="fitness = w*acc + (1-w)*pruned fraction")
    search_seed: int = hp(0, 0, None, doc="seed of the candidate draws and re-initialisation")
    quant_method: str = hp("kmeans", choices=quant.METHODS, doc="kmeans | linear_sym | linear_asym")
    start_bits: int = hp(0, 0, 16, doc="first bit-width tried; 0: 6 for kmeans, 8 for linear")
    min_bits: int = hp(1, 1, 16, doc="lowest bit-width tried (linear_sym needs 2)")
    tolerance: float = hp(2.0, 0.0, 100.0, low_open=True, doc="max held-out accuracy drop, points")
    kmeans_iters: int = hp(300, 1, None, doc="maximum Lloyd iterations of the 1-D k-means")
    val_fraction: float = hp(0.1, 0.0, 1.0, low_open=True, high_open=True,
                             doc="held-out share of each task's training split")
    retrain_epochs: int = hp(1, 0, None, doc="epochs of retraining after pruning")
    retrain_lr_scale: float = hp(0.1, 0.0, 1.0, low_open=True, doc="retrain/search lr scale")
    reinit_free: bool = hp(True, choices=(True, False), doc="re-initialise claimed free weights")
    train_biases: bool = hp(True, choices=(False, True), doc="train and store biases per task")
    norm_policy: str = hp("per_task", choices=("per_task", "frozen"), doc="normalisation layers")

    @property
    def prune_schedule(self) -> list:
        """PackNet's fixed schedule does not apply: ratios are searched per task."""
        return []

    def validate(self) -> None:
        for name in ("population", "search_epochs", "start_bits", "min_bits", "kmeans_iters",
                     "retrain_epochs", "search_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"strategy.{name}={v!r} must be an integer")
        if self.v_min > self.v_max:
            raise ConfigError(f"strategy.v_min={self.v_min} must not exceed strategy.v_max={self.v_max}")
        if self.start_bits and self.start_bits < max(self.min_bits, quant.min_bits(self.quant_method)):
            raise ConfigError(f"strategy.start_bits={self.start_bits} is below the lowest usable "
                              f"bit-width {max(self.min_bits, quant.min_bits(self.quant_method))}")

    def first_bits(self) -> int:
        return self.start_bits or (6 if self.quant_method == "kmeans" else 8)

    def last_bits(self) -> int:
        return min(self.first_bits(), max(self.min_bits, quant.min_bits(self.quant_method)))


@register("ada_qpacknet")
class AdaQPacknet(PackNet):
    """PackNet + adaptive per-layer sparsity + adaptive per-task bit-width (task-IL)."""

    description = "Ada-QPacknet: searched per-layer sparsity + k-means/linear quantisation per task"
    Config = AdaQPacknetConfig
    # searched: the sparsity range, the fitness trade-off, the quantisation tolerance and the
    # retrain share; fixed: compute (population, search epochs, k-means iterations), seeds,
    # the held-out share and the storage policies
    tune_space = {"train_biases": None, "norm_policy": None, "v_min": {"low": 0.1, "high": 0.6},
                  "v_max": {"low": 0.6, "high": 0.95}, "population": None, "search_epochs": None,
                  "search_seed": None, "quant_method": None, "start_bits": None, "min_bits": None,
                  "kmeans_iters": None, "val_fraction": None, "reinit_free": None,
                  "tolerance": {"low": 0.5, "high": 5.0}}

    def __init__(self, cfg: AdaQPacknetConfig, train):
        super().__init__(cfg, train)  # type: ignore[arg-type]
        self.cfg: AdaQPacknetConfig = cfg  # type: ignore[assignment]
        self.val_fraction = cfg.val_fraction
        self.ratios: dict[int, dict[str, float]] = {}
        self.quantised: dict[int, dict[str, Any]] = {}
        self.search_log: dict[int, list[dict[str, Any]]] = {}

    # --- PackNet policy overrides ----------------------------------------------------------------
    def prune_fraction(self, task: int) -> float:
        """Mean searched ratio (before the search: the middle of the range, always > 0)."""
        r = self.ratios.get(task)
        return sum(r.values()) / len(r) if r else (self.cfg.v_min + self.cfg.v_max) / 2

    def layer_prune_fraction(self, task: int, name: str) -> float:
        return self.ratios[task][name]

    def before_task(self, task: int, data: TaskData) -> None:
        fresh = {n: self.owners[n] == masks.FREE for n in self.layers}
        super().before_task(task, data)
        if task > 0 and self.cfg.reinit_free:
            gen = torch.Generator().manual_seed(self.cfg.search_seed * 100003 + task)
            with torch.no_grad():
                for n, m in self.layers.items():
                    w = m.weight
                    bound = 1.0 / math.sqrt(max(1, w[0].numel()))  # PyTorch's default init range
                    noise = (torch.rand(w.shape, generator=gen) * 2 - 1) * bound
                    w.copy_(torch.where(fresh[n].to(w.device), noise.to(w.device), w))

    def before_phase(self, task: int, phase: Phase, data: TaskData) -> None:
        if phase.name == "retrain" and task not in self.ratios:
            self.search_ratios(task, data)
        super().before_phase(task, phase, data)

    def after_task(self, task: int, data: TaskData) -> None:
        if task not in self.ratios:  # no retrain phase: search now, PackNet prunes next
            self.search_ratios(task, data)
        super().after_task(task, data)
        self.quantise_task(task, data)

    # --- adaptive sparsity --------------------------------------------------------------------
    def search_ratios(self, task: int, data: TaskData) -> None:
        """Score ``population`` per-layer ratio vectors on held-out data; keep the fittest."""
        assert self.model is not None
        val = _require_val(data)
        gen = torch.Generator().manual_seed(self.cfg.search_seed * 1000003 + task)
        names = list(self.layers)
        span = self.cfg.v_max - self.cfg.v_min
        draws = self.cfg.v_min + span * torch.rand(self.cfg.population, len(names), generator=gen)
        state = _clone(self.model.state_dict())
        owners = dict(self.owners)
        w, log = self.cfg.fitness_acc_weight, []
        for cand in draws.tolist():
            self.ratios[task] = dict(zip(names, cand))
            self.prune(task)
            self._finetune(task, data, self.cfg.search_epochs)
            acc = data.evaluate(*val)
            pruned = sum(self.pruned[task].values()) / max(1, sum(
                int((o == masks.owner_code(task)).sum()) for o in owners.values()))
            log.append({"ratios": self.ratios[task], "val_acc": acc, "pruned_fraction": pruned,
                        "fitness": w * acc + (1 - w) * pruned})
            self.model.load_state_dict(state)
            self.owners = dict(owners)
            del self.pruned[task]
        best = max(range(len(log)), key=lambda i: (log[i]["fitness"], -i))
        self.ratios[task] = dict(log[best]["ratios"])
        self.search_log[task] = log

    def _finetune(self, task: int, data: TaskData, epochs: int) -> None:
        """Plain loop with the phase's exact freezing (used to score search candidates)."""
        assert self.model is not None
        if epochs <= 0:
            return
        model = self.model
        phase = Phase.default(self.train, "search", epochs=epochs,
                              lr=self.train.lr * self.cfg.retrain_lr_scale)
        PackNet.before_phase(self, task, phase, data)
        opt = build_optimizer((p for p in model.parameters() if p.requires_grad), phase)
        device = next(model.parameters()).device
        was_training = model.training
        model.train()
        if not self.trains_norms(task):
            for m in self.norms.values():
                m.eval()
        for _ in range(epochs):
            for x, y, _t in data.train_loader():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x.to(device), task), y.to(device)).backward()
                self.after_backward()
                opt.step()
                self.after_optimizer_step(0)
                self.count_steps("search")
        model.train(was_training)
        self._train, self._frozen = {}, {}

    # --- adaptive bit-width ---------------------------------------------------------------------
    @torch.no_grad()
    def quantise_task(self, task: int, data: TaskData) -> None:
        """Lower the bit-width while the held-out drop stays under ``tolerance`` points."""
        val = _require_val(data)
        code = masks.owner_code(task)
        own = {n: self.owners[n].to(m.weight.device) == code for n, m in self.layers.items()}
        fp = {n: m.weight.detach().clone() for n, m in self.layers.items()}
        base = data.evaluate(*val)
        trials, chosen = [], None
        for bits in range(self.cfg.first_bits(), self.cfg.last_bits() - 1, -1):
            q = {n: quant.quantize(fp[n][own[n]].cpu(), bits, self.cfg.quant_method,
                                   self.cfg.kmeans_iters) for n in self.layers}
            self._write(task, {n: lv[c] for n, (c, lv, _) in q.items()}, own)
            acc = data.evaluate(*val)
            drop = 100 * (base - acc)
            trials.append({"bits": bits, "val_acc": acc, "drop_points": drop})
            if chosen is None or drop < self.cfg.tolerance:
                chosen = (bits, q, acc)  # the first bit-width is kept even if it misses
            if drop >= self.cfg.tolerance:
                break
        assert chosen is not None
        bits, q, acc = chosen
        self._write(task, {n: lv[c] for n, (c, lv, _) in q.items()}, own)
        self.quantised[task] = {
            "bits": bits, "method": self.cfg.quant_method, "val_acc_fp32": base,
            "val_acc": acc, "tolerance_met": 100 * (base - acc) < self.cfg.tolerance,
            "trials": trials,
            "layers": {n: {"codes": quant.pack_bits(c, bits), "n": int(c.numel()), "params": p}
                       for n, (c, _, p) in q.items()},
        }

    def _write(self, task: int, values: dict[str, Tensor], own: dict[str, Tensor]) -> None:
        for n, m in self.layers.items():
            m.weight[own[n]] = values[n].to(m.weight.device, m.weight.dtype)

    def decoded(self, task: int) -> dict[str, Tensor]:
        """Task ``task``'s weights rebuilt from what is stored (codes, codebooks, owner index)."""
        return quant.dequantise_tasks({n: o.cpu() for n, o in self.owners.items()}, self.quantised, task)

    @contextlib.contextmanager
    def task_context(self, task: int):
        with super().task_context(task):
            if task in self.quantised:
                with torch.no_grad():
                    for n, w in self.decoded(task).items():
                        self.layers[n].weight.copy_(w)
            yield

    # --- accounting, artifact, persistence ----------------------------------------------------------
    def stored_weight_bits(self) -> int:
        """Codes at each task's bit-width plus fp32 codebooks/scales."""
        return sum(q["bits"] * lq["n"] + 32 * lq["params"].numel()
                   for q in self.quantised.values() for lq in q["layers"].values())

    def _bitmaps_smaller(self, owner: Tensor) -> bool:
        return quant.owner_bitmap_bits(owner, self.tasks_done) < self.index_bits() * owner.numel()

    def index_bits_total(self) -> int:
        """Owner index bits: per-task bitmaps over the still-unclaimed entries, or the
        fixed-width packed index where that is smaller (chosen per layer)."""
        return sum(min(quant.owner_bitmap_bits(o.cpu(), self.tasks_done),
                       self.index_bits() * o.numel()) for o in self.owners.values())

    def compression_stats(self) -> CompressionStats:
        stats = super().compression_stats()
        entries = stats.details["shared_entries"]
        stats.stored_bits += self.index_bits_total() - self.index_bits() * entries
        qs = [(q["bits"], lq) for q in self.quantised.values() for lq in q["layers"].values()]
        used = sum(lq["n"] for _, lq in qs)
        stats.stored_params += sum(lq["params"].numel() for _, lq in qs)
        stats.details |= {
            "index_bits": self.index_bits_total() / max(1, entries),
            "codebook_params": sum(lq["params"].numel() for _, lq in qs),
            "bits_per_task": [q["bits"] for q in self.quantised.values()],
            "mean_code_bits": sum(b * lq["n"] for b, lq in qs) / max(1, used),
            "body_bits_per_used_weight":
                (self.stored_weight_bits() + self.index_bits_total()) / max(1, used)}
        return stats

    def export_artifact(self) -> dict[str, Any]:
        assert self.model is not None
        return {"format": "ada-qpacknet-v1", "tasks": self.tasks_done,
                "owners": {n: self._encode_owner(o.cpu()) for n, o in self.owners.items()},
                "quantised": {t: {"bits": q["bits"], "method": q["method"], "layers": q["layers"]}
                              for t, q in self.quantised.items()},
                "biases": self.bias_states, "norms": self.norm_states,
                "heads": [_clone(self.model.head(j).state_dict()) for j in range(self.tasks_done)]}

    @torch.no_grad()
    def load_artifact(self, artifact: dict[str, Any]) -> None:
        check_format(artifact, "ada-qpacknet-v1", self.name)
        self.owners = decode_owners(artifact)
        self.quantised = {int(t): dict(q) for t, q in artifact["quantised"].items()}
        self._load_side_state(artifact)
        if self.tasks_done:
            for n, w in self.decoded(self.tasks_done - 1).items():
                self.layers[n].weight.copy_(w)

    def _encode_owner(self, owner: Tensor) -> dict[str, Any]:
        if self._bitmaps_smaller(owner):
            return {"shape": list(owner.shape),
                    "bitmaps": quant.pack_owner_bitmaps(owner, self.tasks_done)}
        b = self.index_bits()
        return {"shape": list(owner.shape), "bits": b, "packed": masks.pack_bits(owner, b)}

    def task_metrics(self, task: int) -> dict[str, float]:
        out = super().task_metrics(task)
        q = self.quantised[task]
        out |= {f"bits/task_{task}": q["bits"], f"quant_drop_points/task_{task}":
                100 * (q["val_acc_fp32"] - q["val_acc"])}
        out |= {f"prune_ratio/{n}": r for n, r in self.ratios[task].items()}
        return out

    def extra_results(self) -> dict[str, Any]:
        out = super().extra_results()
        out["index_bits"] = self.compression_stats().details["index_bits"]
        out["bits_per_task"] = [self.quantised[t]["bits"] for t in sorted(self.quantised)]
        out["quantisation"] = {str(t): {k: v for k, v in q.items() if k != "layers"}
                               for t, q in self.quantised.items()}
        out["ratios"] = {str(t): r for t, r in self.ratios.items()}
        out["search"] = {str(t): log for t, log in self.search_log.items()}
        return out

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"ratios": self.ratios, "quantised": self.quantised,
                                       "search_log": self.search_log}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ratios = {int(t): dict(r) for t, r in state["ratios"].items()}
        self.quantised = {int(t): dict(q) for t, q in state["quantised"].items()}
        self.search_log = {int(t): list(v) for t, v in state["search_log"].items()}


def _require_val(data: TaskData) -> tuple[Tensor, Tensor]:
    if data.val is None:
        raise ConfigError("ada_qpacknet needs held-out data: set strategy.val_fraction in (0, 1)")
    return data.val


def load_artifact(model: ContinualModel, art: dict[str, Any], task: int) -> None:
    """Make ``model`` answer for ``task`` from an exported artifact alone (weights, biases,
    normalisation state and head), e.g. in a fresh process after ``torch.load(weights_only=True)``."""
    if art.get("format") != "ada-qpacknet-v1":
        raise ConfigError(f"not an ada-qpacknet artifact (format {art.get('format')!r})")
    owners = decode_owners(art)
    with torch.no_grad():
        for n, w in quant.dequantise_tasks(owners, art["quantised"], task).items():
            model.get_submodule(n).weight.copy_(w)
        for n, b in _latest(art["biases"], task).items():
            model.get_submodule(n).bias.copy_(b)
        for k, v in _latest(art["norms"], task).items():
            module, attr = k.rsplit(".", 1)
            getattr(model.get_submodule(module), attr).copy_(v)
        model.head(task).load_state_dict(art["heads"][task])


def decode_owners(art: dict[str, Any]) -> dict[str, Tensor]:
    """The owner index of every layer from its encoding in the artifact (per-task bitmaps
    or the packed fixed-width index)."""
    return {n: quant.unpack_owner_bitmaps(o["bitmaps"], o["shape"]) if "bitmaps" in o else
            masks.unpack_bits(o["packed"], o["bits"], math.prod(o["shape"])).view(o["shape"])
            for n, o in art["owners"].items()}
