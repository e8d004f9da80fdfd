"""One experiment builder: stream -> backbone -> ``ContinualModel`` -> strategy, from a composed
config. Used by training (``train.py``), artifact evaluation (``evaluate_artifact.py``) and the
bench scripts (``experiments/``), so the rules that tie the objects together are stated once:

- a class-IL run of a strategy that ``infers_task`` is trained as task-IL (local labels, one
  head per task, extra "not mine"/rotation outputs) and evaluated by task inference;
- the strategy's scenarios must include the benchmark's;
- the model is initialised from the run's seed (or another seed, to rebuild from an artifact);
- the model must fit the stream (input shape, head sizes).

``plan_experiment`` reads and checks every setting without loading data; ``build_experiment``
loads the stream and builds the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_compress.errors import ConfigError

if TYPE_CHECKING:
    from cl_compress.benchmarks import BenchmarkSpec, Stream
    from cl_compress.engine.task_inference import TaskInferenceSettings
    from cl_compress.models import ContinualModel
    from cl_compress.settings import TrainerSettings, TrainSettings
    from cl_compress.strategies.base import Strategy


@dataclass
class ExperimentPlan:
    """Every setting of a run, checked, before any data is loaded."""

    config: dict[str, Any]
    spec: BenchmarkSpec  # the benchmark as configured
    data_spec: BenchmarkSpec  # the stream actually built (task-IL for task-inference runs)
    strategy: Strategy
    train: TrainSettings
    trainer: TrainerSettings
    task_inference: TaskInferenceSettings | None
    model_name: str
    model_kw: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.config["seed"])


@dataclass
class Experiment:
    plan: ExperimentPlan
    stream: Stream
    model: ContinualModel

    @property
    def strategy(self) -> Strategy:
        return self.plan.strategy


def plan_experiment(c: dict[str, Any], strategy_cls: type | None = None) -> ExperimentPlan:
    """Build the strategy and the typed settings of config ``c`` and check how they fit
    together (imports torch and the strategy, not Lightning, not the data). ``strategy_cls``:
    the strategy class when the caller resolved the name itself (a name read from a data
    file resolves through the registry only: ``evaluate_artifact``)."""
    from cl_compress.benchmarks import BenchmarkSpec
    from cl_compress.engine.task_inference import TaskInferenceSettings
    from cl_compress.settings import TrainerSettings
    from cl_compress.strategies import TrainSettings, get_strategy
    from cl_compress.strategies.base import variant_of

    train = TrainSettings(**c["train"])
    params = dict(c["strategy"])
    explicit = params.pop("variant", None)
    name = params.pop("name")
    strategy = (strategy_cls or get_strategy(name)).from_config(params, train, name=name)
    strategy.variant = str(explicit) if explicit not in (None, "") else variant_of(strategy.cfg)
    spec = BenchmarkSpec(**c["benchmark"])
    if spec.scenario not in strategy.scenarios:
        raise ConfigError(
            f"strategy {strategy.name!r} supports the {'/'.join(strategy.scenarios)}-incremental "
            f"scenario(s), not benchmark.scenario={spec.scenario!r}")
    task_inference: TaskInferenceSettings | None = TaskInferenceSettings(**(c.get("eval") or {}))
    task_inference.validate()
    data_spec = spec
    if spec.scenario == "class" and strategy.infers_task:
        # trained exactly as task-IL; the task id is inferred at test time
        data_spec = dataclasses.replace(spec, scenario="task")
    else:
        task_inference = None
    model_kw = dict(c["model"])
    model_name = model_kw.pop("name")
    return ExperimentPlan(c, spec, data_spec, strategy, train, TrainerSettings(**c["trainer"]),
                          task_inference, model_name, model_kw)


def build_model(plan: ExperimentPlan, stream: Stream, init_seed: int | None = None) -> ContinualModel:
    """The backbone and its task heads for ``stream``, initialised from ``init_seed`` (the
    run's seed by default)."""
    import lightning as L

    from cl_compress.models import ContinualModel, build_backbone
    from cl_compress.settings.validate import check_model_fits

    L.seed_everything(plan.seed if init_seed is None else init_seed, workers=True, verbose=False)
    body, feat = build_backbone(plan.model_name, stream.input_shape, **plan.model_kw)
    ti = plan.task_inference
    model = ContinualModel(body, feat, stream.head_sizes, multi_head=stream.scenario == "task",
                           extra_outputs=ti.extra_outputs if ti else 0,
                           rotations=ti.rotations if ti else 1)
    check_model_fits(model, stream)
    return model


def build_experiment(c: dict[str, Any] | ExperimentPlan, init_seed: int | None = None,
                     stream: Stream | None = None) -> Experiment:
    """Plan (if given a config), load the stream (unless given) and build the model."""
    from cl_compress.benchmarks import build_stream

    plan = c if isinstance(c, ExperimentPlan) else plan_experiment(c)
    stream = stream if stream is not None else build_stream(plan.data_spec)
    return Experiment(plan, stream, build_model(plan, stream, init_seed))
