"""The strategy plugin API: a plain class with small, optional hooks.

Call order for each task ``t`` (see ``runner.run_stream``)::

    setup(model, info)                          once, before task 0 (model surgery)
    before_task(t, data)
    for phase in phases(t):
        before_phase(t, phase, data)            e.g. prune before the retrain phase
        trainer.fit(...)                        per batch: training_loss -> backward ->
                                                after_backward -> optimizer.step ->
                                                after_optimizer_step
        after_phase(t, phase, data)
    after_task(t, data)                         e.g. truncate, quantise, freeze
    with task_context(j): evaluate task j       for every seen task j

A strategy is not a Lightning callback (callbacks cannot change the forward pass or
the loss), but ``callbacks()`` may return some. Hyper-parameters are a dataclass
(``Config``) whose fields carry their valid range in ``metadata``; ``from_config``
validates them before anything trains.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cl_compress.errors import ConfigError
from cl_compress.models import ContinualModel
from cl_compress.settings import (  # noqa: F401  (re-exported)
    DEFAULT_PHASE_WEIGHT,
    SCHEDULERS,
    OptimSettings,
    TrainSettings,
)


def hp(default: Any, low: float | None = None, high: float | None = None, *,
       low_open: bool = False, high_open: bool = False, choices: tuple | None = None,
       doc: str = "") -> Any:
    """A hyper-parameter field with its valid range (checked by ``validate_config``)."""
    meta = {"low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": choices, "doc": doc}
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _range_text(m: dict) -> str:
    lo = "-inf" if m["low"] is None else m["low"]
    hi = "inf" if m["high"] is None else m["high"]
    return f"{'(' if m['low_open'] else '['}{lo}, {hi}{')' if m['high_open'] else ']'}"


def _check_value(prefix: str, m: dict, v: Any) -> None:
    if m["choices"] is not None:
        if v not in m["choices"]:
            raise ConfigError(f"{prefix}={v!r} is invalid; choose one of {list(m['choices'])}")
        return
    if m["low"] is None and m["high"] is None:
        return
    if not isinstance(v, int | float) or isinstance(v, bool) or math.isnan(v):
        raise ConfigError(f"{prefix}={v!r} must be a number in {_range_text(m)}")
    bad_lo = m["low"] is not None and (v <= m["low"] if m["low_open"] else v < m["low"])
    bad_hi = m["high"] is not None and (v >= m["high"] if m["high_open"] else v > m["high"])
    if bad_lo or bad_hi:
        raise ConfigError(f"{prefix}={v!r} is out of range; valid range is {_range_text(m)}")


def validate_config(cfg: Any, prefix: str = "strategy") -> None:
    """Check every ``hp`` field of a dataclass (lists are checked element-wise)."""
    for f in dataclasses.fields(cfg):
        if not f.metadata:
            continue
        v = getattr(cfg, f.name)
        for i, item in enumerate(v) if isinstance(v, list | tuple) else [(None, v)]:
            name = f"{prefix}.{f.name}" + ("" if i is None else f"[{i}]")
            _check_value(name, dict(f.metadata), item)


def variant_of(cfg: Any) -> str:
    """The variant a config describes: its categorical settings (``hp`` fields with
    ``choices``: modes, policies, switches) that differ from their defaults, as
    ``key=value`` joined by ``,`` (e.g. ``mode=truncate``); ``""`` for the default method.
    Numeric hyper-parameters (ratios, rates) tune a method without making it another one."""
    out = []
    for f in dataclasses.fields(cfg):
        if not f.metadata or f.metadata.get("choices") is None:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # lists: CACL's factorize
            default = f.default_factory()
        else:
            default = None
        v = getattr(cfg, f.name)
        if v != default:
            out.append(f"{f.name}={str(v).lower() if isinstance(v, bool) else v}")
    return ",".join(out)


@dataclass
class StrategyConfig:
    """Base of every strategy's hyper-parameter dataclass (no fields)."""

    def validate(self) -> None:
        """Cross-field checks; per-field ranges are checked by ``validate_config``."""


def lr_factor(step: int, total: int, scheduler: str, milestones: list, gamma: float,
              warmup: int) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based) of a phase
    of ``total`` steps: linear warm-up over ``warmup`` steps, then the schedule."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if scheduler == "multistep":
        return gamma ** sum(step >= round(m * total) for m in milestones)
    if scheduler == "cosine":
        span = max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))
    return 1.0


@dataclass
class Phase(OptimSettings):
    """One ``Trainer.fit`` of a task: its length and optimiser.

    ``epochs`` is the length unless ``steps`` is set (optimiser steps; the loop sets it
    from ``train.steps_per_task``). The optimiser and schedule are :class:`OptimSettings`,
    the type ``TrainSettings`` shares: :meth:`default` starts from the run's.
    """

    name: str = "train"
    epochs: int = 1
    steps: int | None = None

    @classmethod
    def default(cls, train: TrainSettings, name: str = "train", **overrides: Any) -> Phase:
        """A phase with every setting it shares with ``train`` (optimiser, schedule), the
        default phase length ``train.phase_epochs`` and ``overrides``."""
        shared = [f.name for f in dataclasses.fields(OptimSettings)]
        base = {k: copy.copy(getattr(train, k)) for k in shared}  # lists are not shared
        base |= {"name": name, "epochs": train.phase_epochs, **overrides}
        return cls(**base)


def build_optimizer(params, phase: Phase) -> torch.optim.Optimizer:
    """The optimiser of a phase (the runner's, and a strategy's own fine-tuning)."""
    params = list(params)
    if not params:
        raise ValueError(f"phase {phase.name!r} has no trainable parameters")
    if phase.optimizer == "adam":
        return torch.optim.Adam(params, lr=phase.lr, weight_decay=phase.weight_decay)
    if phase.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
    if phase.optimizer == "sgd":
        return torch.optim.SGD(params, lr=phase.lr, momentum=phase.momentum,
                               weight_decay=phase.weight_decay,
                               nesterov=bool(phase.nesterov and phase.momentum > 0))
    raise ValueError(f"optimizer {phase.optimizer!r} is not one of adam, adamw, sgd")


def allocate_steps(phases: list[Phase], steps_per_task: int) -> list[Phase]:
    """Give the phases of one task ``steps_per_task`` optimiser steps in total, split in
    proportion to their epochs (largest remainder; every phase gets at least one step)."""
    if not phases:
        return phases
    if steps_per_task < len(phases):
        raise ConfigError(f"train.steps_per_task={steps_per_task} is fewer than the task's "
                          f"{len(phases)} phases {[p.name for p in phases]}")
    weights = [max(0, p.epochs) for p in phases]
    if sum(weights) == 0:
        weights = [1] * len(phases)
    exact = [steps_per_task * w / sum(weights) for w in weights]
    steps = [max(1, int(e)) for e in exact]
    order = sorted(range(len(phases)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    k = 0
    while sum(steps) < steps_per_task:
        steps[order[k % len(order)]] += 1
        k += 1
    while sum(steps) > steps_per_task:  # only when the at-least-one rule overshoots
        steps[max(range(len(steps)), key=lambda j: steps[j])] -= 1
    return [dataclasses.replace(p, steps=n) for p, n in zip(phases, steps)]


@dataclass
class StreamInfo:
    """What a strategy may know about the stream at setup time."""

    n_tasks: int
    scenario: str
    input_shape: tuple[int, ...]
    head_sizes: list[int]
    # the stream's name (``benchmark.name``), e.g. for a rule the authors tie to a dataset
    benchmark: str = ""


@dataclass
class TaskData:
    """The current task as strategies see it.

    ``train_loader()`` gives a fresh seeded loader of the task's training data;
    ``val`` is held out from the training split when ``Strategy.val_fraction > 0``;
    ``evaluate(x, y)`` returns the current model's accuracy for this task on (x, y);
    ``fit(phase)`` trains the current task for ``phase`` outside the task's own phases
    (e.g. a search candidate) with the engine's training step; ``seed`` is the task's
    seed, derived from the run seed (same on every DDP rank and on resume).
    """

    task: int
    n_outputs: int
    train_loader: Callable[[], DataLoader]
    val: tuple[Tensor, Tensor] | None
    evaluate: Callable[[Tensor, Tensor], float]
    fitter: Callable[[Phase], int] | None = None
    seed: int = 0

    def fit(self, phase: Phase) -> int:
        """Train the current task for ``phase`` (its ``epochs``, or ``steps`` when set) with
        the engine's own training step: the strategy's ``training_loss``, ``after_backward``
        and ``after_optimizer_step`` hooks, its ``parameters_to_optimize`` and callbacks and
        the phase's optimiser and lr schedule, as in the task's phases. The strategy prepares
        its masks first (``before_phase``-like). The steps are recorded as extra steps under
        ``phase.name`` (:meth:`Strategy.count_steps`) and returned."""
        if self.fitter is None:
            raise RuntimeError("this TaskData has no training engine attached (fitter=None): "
                               "cl_compress.engine.loop.engine_fitter makes one")
        return self.fitter(phase)


@dataclass
class CompressionStats:
    """What the strategy stores to answer for every task seen so far."""

    stored_params: int
    stored_bits: int
    details: dict[str, Any] = field(default_factory=dict)


def check_format(artifact: Any, expected: str, strategy: str) -> None:
    """Refuse an artifact of another format (another strategy, another version)."""
    from cl_compress.errors import CheckpointError

    got = artifact.get("format") if isinstance(artifact, dict) else type(artifact).__name__
    if got != expected:
        raise CheckpointError(f"strategy {strategy!r} loads {expected!r} artifacts, not {got!r}: "
                              f"evaluate the artifact with the strategy of the run that wrote it")


def dense_stats(modules: list[nn.Module] | nn.Module, bits: int = 32) -> CompressionStats:
    """Every parameter of ``modules`` stored densely at ``bits`` bits."""
    mods = modules if isinstance(modules, list) else [modules]
    n = sum(p.numel() for m in mods for p in m.parameters())
    return CompressionStats(stored_params=n, stored_bits=n * bits)


def rehearse_setup(strategy: Strategy, model: nn.Module, info: StreamInfo) -> None:
    """Run ``strategy.setup`` once on copies of the strategy and the model, so that an error
    a plugin raises in ``setup`` (a model it cannot handle) comes before W&B starts and before
    anything trains; the run's own objects are untouched (the loop seeds and calls ``setup``
    itself). What needs no model belongs in ``Config.validate()``, which runs before any data
    is loaded."""
    copy.deepcopy(strategy).setup(copy.deepcopy(model), info)  # type: ignore[arg-type]


class Strategy:
    """Base class: every hook is a no-op, so the base class is plain fine-tuning."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    scenarios: ClassVar[tuple[str, ...]] = ("task", "class")
    # True: the strategy answers through task_context(j) and head j, so under
    # benchmark.scenario=class it trains task-incrementally and the task id is inferred at
    # test time (cl_compress.engine.task_inference); False: class-IL uses one shared head
    infers_task: ClassVar[bool] = False
    # True: old tasks are never forgotten: task j's outputs under task_context(j) stay
    # bit-identical after every later task (parameter isolation, one model per task); the
    # contract kit (cl_compress.testing.contract) checks it for every strategy declaring it
    zero_forgetting: ClassVar[bool] = False
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    val_fraction: float = 0.0
    # hyper-parameter search (cl_compress.launch.tune): by default every ``hp`` field is searched over
    # its valid range (see cl_compress.launch.tune.search_space); an entry here narrows one field
    # ({"low": .., "high": .., "log": bool} or {"choices": [...]}) or, as None, keeps it at
    # its configured value (policies that change what the method is, compute knobs)
    tune_space: ClassVar[dict[str, dict[str, Any] | None]] = {}
    # a label only (``strategy.variant``; W&B names, tags and the report): which variant of
    # the method this run is; empty: :func:`variant_of` derives it from the settings
    variant: str = ""

    @property
    def label(self) -> str:
        """``name`` or ``name[variant]``, e.g. ``lrpet[mode=truncate]``."""
        return f"{self.name}[{self.variant}]" if self.variant else self.name

    def __init__(self, cfg: StrategyConfig, train: TrainSettings):
        self.cfg = cfg
        self.train = train
        self.model: ContinualModel | None = None
        self.info: StreamInfo | None = None

    @property
    def net(self) -> ContinualModel:
        """The model handed to :meth:`setup` (``self.model`` typed as set); a hook that runs
        before ``setup`` gets a RuntimeError naming the strategy and the hook."""
        if self.model is None:
            hook = sys._getframe(1).f_code.co_name
            raise RuntimeError(f"strategy {self.name or type(self).__name__!r}: {hook}() needs the "
                               f"model, but setup(model, info) has not been called yet")
        return self.model

    @classmethod
    def from_config(cls, params: dict[str, Any], train: TrainSettings, name: str = "") -> Strategy:
        """Build from a plain dict; unknown keys and out-of-range values raise ConfigError.

        ``name``: what the run calls the strategy (``strategy.name`` as given: a registered
        name, an entry-point name or an import path); default: the class's registered name.
        It is set on the instance; the class is never changed."""
        name = name or cls.name
        names = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {unknown} for strategy {name!r}; "
                f"valid: {sorted(names) or 'none'}"
            )
        cfg = cls.Config(**params)
        validate_config(cfg)
        cfg.validate()
        strategy = cls(cfg, train)
        if name != strategy.name:
            strategy.name = name  # type: ignore[misc]  (an instance attribute shadows the class's)
        return strategy

    # --- lifecycle -------------------------------------------------------------------
    def setup(self, model: ContinualModel, info: StreamInfo) -> None:
        """Called once before the first task; may replace layers of ``model`` in place."""
        self.model, self.info = model, info

    def before_task(self, task: int, data: TaskData) -> None:
        """Prepare task ``task`` (new masks, ranks, re-initialisation ...)."""

    def phases(self, task: int) -> list[Phase]:
        """The ``Trainer.fit`` calls of a task; default: one phase from ``train``."""
        return [Phase.default(self.train)]

    def before_phase(self, task: int, phase: Phase, data: TaskData) -> None:
        """Before each phase's fit."""

    def after_phase(self, task: int, phase: Phase, data: TaskData) -> None:
        """After each phase's fit."""

    def after_task(self, task: int, data: TaskData) -> None:
        """Compress / freeze what task ``task`` owns."""

    def probe(self, task: int, evaluate: Callable[[], float]) -> None:
        """Report-only measurements of task ``task`` right after ``after_task`` stored it:
        ``evaluate()`` is the current model's test accuracy for the task (the runner's own
        evaluation). A probe must leave the model and what is stored exactly as it found them,
        and its figures go to results only, never back into training."""

    # --- training-step hooks -----------------------------------------------------------
    def parameters_to_optimize(self, task: int, phase: Phase) -> Iterator[nn.Parameter]:
        """Parameters handed to the phase's optimiser (rebuilt fresh every phase)."""
        return (p for p in self.net.parameters() if p.requires_grad)

    def training_loss(self, loss: Tensor, logits: Tensor, batch: tuple) -> Tensor:
        """Add regularisers to the task loss."""
        return loss

    def after_backward(self) -> None:
        """Edit gradients (e.g. zero those of frozen weights)."""

    def after_optimizer_step(self, step: int) -> None:
        """After each optimiser step (e.g. re-apply masks, project every N steps)."""

    def callbacks(self) -> list:
        """Extra Lightning callbacks for every phase's Trainer."""
        return []

    def count_steps(self, kind: str, n: int = 1) -> None:
        """Record ``n`` optimiser steps (or calibration batches) taken OUTSIDE the phases'
        fits, e.g. Ada-QPacknet's candidate fine-tuning (``kind="search"``) or BatchNorm
        re-estimation (``kind="bn_calibration"``). They are reported beside the training
        budget in results.json ``budget.extra_steps``, never hidden in it."""
        counts = self.__dict__.setdefault("_extra_steps", {})
        counts[kind] = counts.get(kind, 0) + int(n)

    def take_extra_steps(self) -> dict[str, int]:
        """The counts of :meth:`count_steps` since the last call (the runner calls it once
        per task)."""
        return self.__dict__.pop("_extra_steps", {})

    # --- evaluation, accounting, persistence ---------------------------------------------
    def task_context(self, task: int) -> contextlib.AbstractContextManager:
        """Make the model answer as it should for task ``task`` (mask, rank, codebook ...)."""
        return contextlib.nullcontext()

    def compression_stats(self) -> CompressionStats:
        """Stored parameters/bits; default: the whole model, dense fp32."""
        return dense_stats(self.net)

    def export_artifact(self) -> dict[str, Any]:
        """The compressed model to save on disk (tensors and plain values only)."""
        return {"format": "dense-fp32", "model": self.net.state_dict()}

    def load_artifact(self, artifact: dict[str, Any]) -> None:
        """The inverse of :meth:`export_artifact`: after ``setup(model, info)`` on a freshly
        built model (any initialisation), make ``task_context(j)`` answer for every exported
        task ``j`` exactly as the run did, from the artifact alone (``cl_compress.evaluate_artifact``).
        A strategy that overrides ``export_artifact`` overrides this too."""
        check_format(artifact, "dense-fp32", self.name)
        self.net.load_state_dict(artifact["model"])

    def task_metrics(self, task: int) -> dict[str, float]:
        """Figures logged after each task under ``compress/`` (e.g. ``rank/body.0``: the
        per-layer rank used by task ``task``, ``bits/task_3``). A per-layer figure is named
        ``<kind>/<path>`` with the layer's path in the ContinualModel (``body.0``, ``body.3``),
        the same across strategies."""
        return {}

    def extra_results(self) -> dict[str, Any]:
        """Strategy-specific figures for results.json (e.g. per-layer ranks per task)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Strategy state beyond the model's own state_dict (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; called on resume after ``setup`` and before the model's
        ``state_dict`` is loaded, so that a strategy can first rebuild any modules it adds.

        Resume restores tensors only (the model's state_dict and this one), not
        ``requires_grad`` flags, module modes or hooks a hook set once: derive per-task flags
        from ``t`` in :meth:`before_task`, or keep them here and re-apply them
        (docs/writing-a-strategy.md, "What resume restores")."""

