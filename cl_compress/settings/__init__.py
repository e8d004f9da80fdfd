"""The typed settings of every config group, and their checks, without importing torch,
Lightning or Avalanche: the command line validates a config before any heavy import
(``cl_compress.train``), and ``make list`` reads the catalogue from here. The modules that
use them re-export them (``strategies.base.TrainSettings``, ``runner.TrainerSettings``,
``tracking.TrackerSettings``, ``benchmarks.BenchmarkSpec``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cl_compress.errors import ConfigError
from cl_compress.settings.catalogue import AUGMENTS, BenchmarkInfo, catalogue  # noqa: F401

SCENARIOS = ("task", "class")


SCHEDULERS = ("none", "multistep", "cosine")


@dataclass
class OptimSettings:
    """The optimiser and its learning-rate schedule: one type shared by the ``train`` group
    (:class:`TrainSettings`, the run's defaults) and every phase of a task
    (``strategies.base.Phase``, which starts from them and may override any).

    ``scheduler`` shapes the learning rate inside a phase over that phase's own steps:
    ``multistep`` multiplies it by ``gamma`` at each fraction in ``milestones``, ``cosine``
    anneals it to 0; ``warmup_steps`` first ramps it linearly up to ``lr``.
    """

    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    milestones: list = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    warmup_steps: int = 0
    nesterov: bool = False


@dataclass
class TrainSettings(OptimSettings):
    """Default optimisation settings (``train`` config group); phases may override.

    The training budget of a task is exactly one of ``steps_per_task`` (default: optimiser
    steps in total over the task's phases, split between them in proportion to their
    epochs: PackNet's main phase weighs ``phase_epochs`` = 2 and ``retrain_epochs`` = 1, so
    2/3 of the steps train and 1/3 retrain) or ``epochs`` (per phase). Steps are the unit
    that a comparison across datasets and strategies can hold equal (the ``BudgetLedger``
    run callback records the work done).
    """

    epochs: int | None = None
    batch_size: int = 128
    eval_batch_size: int = 1024
    steps_per_task: int | None = 1000

    @property
    def phase_epochs(self) -> int:
        """Epochs of a default phase: ``epochs``, or 2 as the phase's weight when the budget
        is given in steps."""
        return self.epochs if self.epochs is not None else DEFAULT_PHASE_WEIGHT


DEFAULT_PHASE_WEIGHT = 2


@dataclass
class TrainerSettings:
    """``trainer`` config group: how Lightning runs each phase."""

    accelerator: str = "auto"  # auto: a GPU when one is present, else the CPU
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    progress_bar: bool = True
    deterministic: bool = True
    # DDP with BatchNorm: true converts BatchNorm to SyncBatchNorm (batch statistics over all
    # ranks' samples; GPU only); false (default): each rank normalises by its own batch, and
    # rank 0's running statistics are copied to every rank at the end of each fit (docs/scaling.md)
    sync_batchnorm: bool = False


@dataclass
class TrackerSettings:
    """``logger`` config group."""

    wandb: bool = True
    project: str = "cl_compress"
    entity: str | None = None
    mode: str | None = None  # online | offline | disabled; None -> $WANDB_MODE or offline
    group: str | None = None  # default: the benchmark name
    tags: list[str] = field(default_factory=list)
    system_metrics: bool = True  # W&B System tab: CPU/GPU use, memory (false: off)
    console: bool = True  # W&B Logs tab: the run's terminal output (false: off)


# name -> (one-line description, default n_tasks, kind): a view of the registry
# (``@register_benchmark`` on a loader in cl_compress/benchmarks/, read without torch)
BENCHMARK_INFO = catalogue()
BENCHMARKS: dict[str, tuple[str, int, str]] = {
    n: (i.description, i.default_tasks, i.kind) for n, i in BENCHMARK_INFO.items()}
BACKENDS = ("avalanche", "native")
# classes of the benchmarks split by class (n_tasks must divide them; synthetic makes 2 per task)
SPLIT_CLASSES = {"split_fmnist": 10, "split_digits": 10, "split_mnist": 10, "split_cifar100": 100}


@dataclass
class BenchmarkSpec:
    """Typed benchmark settings (the ``benchmark`` config group)."""

    name: str
    scenario: str = "task"
    n_tasks: int | None = None
    seed: int = 0
    backend: str = "avalanche"
    data_root: str | None = None
    download: bool = True
    class_order: list[int] | None = None
    max_train_per_task: int | None = None
    max_test_per_task: int | None = None
    eval_split: str = "test"
    val_fraction: float = 0.1
    augment: str | None = None  # standard | none; None: the benchmark's default
    on_device: bool | str = "auto"  # auto | true | false: the task's tensors on the accelerator

    @property
    def augmentation(self) -> str:
        """``augment``, or the registered default of the benchmark."""
        return self.augment if self.augment is not None else BENCHMARK_INFO[self.name].augment


EVAL_SPLITS = ("test", "val")


def validate_spec(spec: BenchmarkSpec) -> None:
    """Reject unknown names and out-of-range settings before anything is loaded."""
    if spec.name not in BENCHMARKS:
        raise ConfigError(
            f"unknown benchmark {spec.name!r}; choose one of: {', '.join(sorted(BENCHMARKS))}"
        )
    if spec.scenario not in SCENARIOS:
        raise ConfigError(f"benchmark.scenario={spec.scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    if spec.backend not in BACKENDS:
        raise ConfigError(f"benchmark.backend={spec.backend!r}; choose one of: {', '.join(BACKENDS)}")
    if spec.n_tasks is not None and spec.n_tasks < 1:
        raise ConfigError(f"benchmark.n_tasks must be >= 1, got {spec.n_tasks}")
    n_cls = len(spec.class_order) if spec.class_order else SPLIT_CLASSES.get(spec.name)
    if spec.n_tasks is not None and n_cls and n_cls % spec.n_tasks:
        ok = [d for d in range(1, n_cls + 1) if n_cls % d == 0]
        raise ConfigError(f"benchmark.n_tasks={spec.n_tasks} does not divide the {n_cls} classes "
                          f"of {spec.name} (Avalanche cannot split them); choose one of {ok}")
    if spec.eval_split not in EVAL_SPLITS:
        raise ConfigError(f"benchmark.eval_split={spec.eval_split!r}; choose one of: "
                          f"{', '.join(EVAL_SPLITS)}")
    if spec.eval_split == "val" and not (isinstance(spec.val_fraction, int | float)
                                         and 0.0 < spec.val_fraction < 1.0):
        raise ConfigError(f"benchmark.val_fraction={spec.val_fraction!r} must be in (0, 1)")
    if spec.augment is not None and spec.augment not in AUGMENTS:
        raise ConfigError(f"benchmark.augment={spec.augment!r}; choose one of: {', '.join(AUGMENTS)}")
    if spec.on_device not in (True, False, "auto"):
        raise ConfigError(f"benchmark.on_device={spec.on_device!r}; choose one of: auto, true, false")
    info = BENCHMARK_INFO[spec.name]
    n_tasks = spec.n_tasks or info.default_tasks
    if info.n_classes is not None and info.kind == "split" and info.n_classes % n_tasks:
        raise ConfigError(f"benchmark.n_tasks={n_tasks} must divide the {info.n_classes} classes "
                          f"of {spec.name} evenly")
    for key in ("max_train_per_task", "max_test_per_task"):
        v = getattr(spec, key)
        if v is not None and v < 1:
            raise ConfigError(f"benchmark.{key} must be >= 1 or null, got {v}")


# --- eval: class-IL task inference (used by cl_compress.engine.task_inference) -------------------

SCORES = ("auto", "max_softmax", "entropy", "energy", "not_mine", "rotation")
NEGATIVES = ("none", "rotate", "jigsaw", "rotate_jigsaw", "flip_jigsaw", "cutmix", "all",
             "rotation_classes")


@dataclass
class TaskInferenceSettings:
    """``eval`` config group (used only under ``benchmark.scenario=class`` by strategies
    that answer through a task context: the isolation strategies and ``individual``).

    ``task_inference``: the score that picks the task (``auto``: ``not_mine`` when the heads
    are trained with negatives, else ``max_softmax``). ``negatives``: the self-made negatives
    that train each head's extra "not mine" output (``none``: no extra output, plain
    confidence). ``negative_weight``: weight of the negatives' cross-entropy.
    ``refit_old_heads``: after each task ``t``, every old head ``j < t`` refits its "not mine"
    row (``refit_steps`` Adam steps at ``refit_lr`` on features, class rows untouched) with
    task ``t``'s training images, seen through task ``j``'s context, as negatives, and task
    ``j``'s stored per-class feature mean and std as positives (``2 * classes * feat_dim``
    numbers per task, counted in ``compression``).
    """

    task_inference: str = "auto"
    negatives: str = "rotate_jigsaw"
    negative_weight: float = 1.0
    refit_old_heads: bool = True
    refit_steps: int = 100
    refit_lr: float = 0.01
    refit_energy: float = 0.999
    normalise_scores: bool = False

    def validate(self) -> None:
        if self.task_inference not in SCORES:
            raise ConfigError(f"eval.task_inference={self.task_inference!r}; choose one of "
                              f"{', '.join(SCORES)}")
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"eval.negatives={self.negatives!r}; choose one of {', '.join(NEGATIVES)}")
        w = self.negative_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 < w < float("inf"):
            raise ConfigError(f"eval.negative_weight={w!r} must be a finite number > 0")
        for key in ("refit_steps",):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"eval.{key}={v!r} must be an integer >= 1")
        if isinstance(self.refit_lr, bool) or not isinstance(self.refit_lr, int | float) \
                or not 0 < self.refit_lr < float("inf"):
            raise ConfigError(f"eval.refit_lr={self.refit_lr!r} must be a finite number > 0")
        if self.refit_old_heads not in (True, False):
            raise ConfigError(f"eval.refit_old_heads={self.refit_old_heads!r} must be true or false")
        e = self.refit_energy
        if isinstance(e, bool) or not isinstance(e, int | float) or not 0 < e <= 1:
            raise ConfigError(f"eval.refit_energy={e!r} must be in (0, 1]")
        if self.normalise_scores not in (True, False):
            raise ConfigError(f"eval.normalise_scores={self.normalise_scores!r} must be true or false")
        if self.task_inference == "rotation" and self.negatives != "rotation_classes":
            raise ConfigError("eval.task_inference=rotation goes with eval.negatives=rotation_classes "
                              "(use task_inference=auto)")
        if self.task_inference == "not_mine" and self.extra_outputs == 0:
            raise ConfigError("eval.task_inference=not_mine needs heads trained with negatives: "
                              "set eval.negatives (e.g. rotate_jigsaw)")

    @property
    def extra_outputs(self) -> int:
        """Outputs every head has beyond its task's classes (the "not mine" logit)."""
        return 0 if self.negatives in ("none", "rotation_classes") else 1

    @property
    def rotations(self) -> int:
        """Outputs per class: 4 (one per quarter turn) with ``rotation_classes``, else 1."""
        return 4 if self.negatives == "rotation_classes" else 1

    @property
    def refits(self) -> bool:
        """Old heads' "not mine" rows are refitted (needs the extra output)."""
        return bool(self.refit_old_heads) and self.extra_outputs > 0

    @property
    def score(self) -> str:
        if self.task_inference != "auto":
            return self.task_inference
        if self.rotations > 1:
            return "rotation"
        return "not_mine" if self.extra_outputs else "max_softmax"
