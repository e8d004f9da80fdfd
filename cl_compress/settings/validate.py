"""Checks of the composed config and of the loaded data, run before anything trains.

Each failure is a one-line :class:`~cl_compress.errors.ConfigError` (config) or
:class:`~cl_compress.errors.DataError` (data) naming the key or the task, so the command
line prints ``error: ...`` and exits with status 2 instead of a traceback mid-run.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_compress.errors import ConfigError, DataError

if TYPE_CHECKING:
    from cl_compress.settings import TrainSettings

FLOAT32_MAX = 3.4028234663852886e38
MAX_SEED = (2**32 - 1) // 1000 - 1  # task seeds are seed * 1000 + task, within numpy's range
WANDB_MODES = ("online", "offline", "disabled")
RESUME_VALUES = (True, False, "auto")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


@cache
def _top_level_keys() -> frozenset[str]:
    """Keys the packaged ``train.yaml`` defines (plain keys and config groups)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).parents[1] / "configs" / "train.yaml")
    keys = {k for k in cfg if k not in ("defaults", "hydra")}
    for d in cfg.get("defaults", []):
        if isinstance(d, str) and d != "_self_":
            keys.add(d.split("@")[0].lstrip("+"))
        elif not isinstance(d, str):
            keys.update(str(k).split("@")[0].lstrip("+").split("/")[0] for k in d)
    return frozenset(keys)


def _unknown_keys(group: str, given: dict[str, Any], valid: set[str]) -> None:
    unknown = sorted(set(given) - valid)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{group}.{k}' for k in unknown)}; valid {group} keys: "
            f"{', '.join(sorted(valid))}"
        )


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def check_seed(name: str, v: Any) -> None:
    if not _is_int(v) or not 0 <= v <= MAX_SEED:
        raise ConfigError(f"{name}={v!r} must be an integer in [0, {MAX_SEED}]")


def check_config(c: dict[str, Any]) -> None:
    """Validate the resolved config dict; raises ConfigError naming the first bad key.
    Imports neither torch, Lightning nor Avalanche (``settings.py``, :func:`backbone_signatures`)."""
    from cl_compress.settings import (
        BenchmarkSpec,
        TrackerSettings,
        TrainerSettings,
        TrainSettings,
        validate_spec,
    )

    extra = sorted(set(c) - _top_level_keys() - {"hydra", "device"})  # device: set by train.py
    if extra:
        raise ConfigError(f"unknown top-level key(s) {', '.join(extra)}; valid: "
                          f"{', '.join(sorted(_top_level_keys()))}")
    for group in ("train", "benchmark", "trainer", "logger", "model", "strategy"):
        if not isinstance(c.get(group), dict):
            raise ConfigError(f"config group {group!r} is missing or not a mapping")
    check_seed("seed", c.get("seed"))
    if c.get("resume", False) not in RESUME_VALUES:
        raise ConfigError(f"resume={c.get('resume')!r} must be true, false or auto")
    if not isinstance(c.get("overwrite", False), bool):
        raise ConfigError(f"overwrite={c.get('overwrite')!r} must be true or false")
    _check_dataclass_group("train", c["train"], TrainSettings)
    lr = c["train"].get("lr")
    if not _is_number(lr) or not lr > 0:
        raise ConfigError(f"train.lr={lr!r} must be a number > 0")
    check_train(TrainSettings(**c["train"]))
    _unknown_keys("benchmark", c["benchmark"], set(_fields(BenchmarkSpec)))
    check_seed("benchmark.seed", c["benchmark"].get("seed", 0))
    if c["benchmark"].get("data_root") == "":
        raise ConfigError("benchmark.data_root is empty; give a folder, or null for the default search")
    validate_spec(BenchmarkSpec(**c["benchmark"]))
    check_data_root(c["benchmark"])
    _unknown_keys("trainer", c["trainer"], set(_fields(TrainerSettings)))
    check_trainer(c["trainer"])
    _unknown_keys("logger", c["logger"], set(_fields(TrackerSettings)))
    check_logger(c["logger"])
    if not isinstance(c["strategy"].get("name"), str) or not c["strategy"]["name"]:
        raise ConfigError(f"strategy.name={c['strategy'].get('name')!r} must name a strategy")
    check_model(c["model"])
    if c.get("eval") is not None:
        check_eval(c["eval"])


def check_eval(e: Any) -> None:
    """``eval`` (class-IL task inference): known keys, typed values, valid choices (no
    torch import: the settings live in settings.py)."""
    from cl_compress.settings import TaskInferenceSettings

    if not isinstance(e, dict):
        raise ConfigError(f"eval={e!r} must be a mapping of task-inference settings")
    _check_dataclass_group("eval", e, TaskInferenceSettings)
    TaskInferenceSettings(**e).validate()


def _check_dataclass_group(group: str, given: dict[str, Any], cls) -> None:
    """Unknown keys are refused; a field whose default is an int/float needs a number
    of that kind (an int field refuses 1.5 instead of truncating it)."""
    fields = _fields(cls)
    _unknown_keys(group, given, set(fields))
    for k, v in given.items():
        f = fields[k]
        default = f.default if f.default is not dataclasses.MISSING else None
        optional = "None" in str(f.type)  # e.g. train.steps_per_task: int | None
        if v is None and optional:
            continue
        if optional and default is None and str(f.type).startswith("int") and not _is_int(v):
            raise ConfigError(f"{group}.{k}={v!r} must be an integer or null")
        if isinstance(default, bool) or default is None:
            continue
        if _is_int(default) and not _is_int(v):
            raise ConfigError(f"{group}.{k}={v!r} must be an integer")
        if isinstance(default, float) and not _is_number(v):
            raise ConfigError(f"{group}.{k}={v!r} must be a number")


@cache
def backbone_signatures() -> dict[str, dict[str, Any]]:
    """``{model name: {keyword: default}}`` of every backbone in ``models/backbones.py``'s
    ``BACKBONES`` table, read from the source (no torch import); a test checks it against
    ``inspect.signature`` of the functions themselves."""
    import ast

    tree = ast.parse((Path(__file__).parents[1] / "models" / "backbones.py").read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    table = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", "") == "BACKBONES" for t in n.targets))
    out: dict[str, dict[str, Any]] = {}
    assert isinstance(table, ast.Dict)
    for key, value in zip(table.keys, table.values):
        assert isinstance(key, ast.Constant) and isinstance(value, ast.Tuple)
        fn = funcs[value.elts[0].id]  # type: ignore[attr-defined]
        args = fn.args.args[1:]  # the first argument is the input shape
        defaults = [inspect.Parameter.empty] * (len(args) - len(fn.args.defaults)) + \
            [ast.literal_eval(d) for d in fn.args.defaults]
        out[key.value] = {a.arg: d for a, d in zip(args, defaults[-len(args):] if args else [])}
    return out


def check_model(m: dict[str, Any]) -> None:
    """Model name known, keyword arguments known, widths integers >= 1 (no torch import)."""
    backbones = backbone_signatures()
    name = m.get("name")
    if name not in backbones:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(backbones))}")
    params = backbones[name]
    kw = {k: v for k, v in m.items() if k != "name"}
    _unknown_keys("model", kw, set(params))
    for k, v in kw.items():
        default = params[k]
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"model.{k}={v!r} must be true or false")
        elif isinstance(default, list | tuple):
            if not isinstance(v, list | tuple) or not all(_is_int(x) and x >= 1 for x in v):
                raise ConfigError(f"model.{k}={v!r} must be a list of integers >= 1 (layer widths)")
        elif _is_int(default):
            if not _is_int(v) or v < 1:
                raise ConfigError(f"model.{k}={v!r} must be an integer >= 1")
        elif isinstance(default, float):
            if not _is_number(v) or (k == "dropout" and not 0 <= v < 1):
                rng = " in [0, 1)" if k == "dropout" else ""
                raise ConfigError(f"model.{k}={v!r} must be a number{rng}")


# Lightning 2.x's precision and strategy names (checked here, before Lightning is imported)
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "64-true", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16", "32", "16", "bf16", "64")
LIGHTNING_STRATEGIES = (
    "auto", "ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true", "ddp_fork",
    "ddp_fork_find_unused_parameters_false", "ddp_fork_find_unused_parameters_true", "ddp_notebook",
    "ddp_notebook_find_unused_parameters_false", "ddp_notebook_find_unused_parameters_true",
    "ddp_spawn", "ddp_spawn_find_unused_parameters_false", "ddp_spawn_find_unused_parameters_true",
    "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_2_offload",
    "deepspeed_stage_3", "deepspeed_stage_3_offload", "deepspeed_stage_3_offload_nvme", "fsdp",
    "fsdp_cpu_offload", "single_device", "single_tpu", "single_xla", "xla", "xla_debug")
# what a multi-node launcher sets: SLURM (srun), torchelastic (torchrun), LSF, MPI, or
# Lightning's own variables set by hand on every node (MASTER_ADDR with NODE_RANK)
CLUSTER_ENV = ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE",
               "MASTER_ADDR+NODE_RANK")


def cluster_environment() -> bool:
    """Whether a multi-node launcher started this process (see :data:`CLUSTER_ENV`)."""
    return any(all(os.environ.get(k) for k in name.split("+")) for name in CLUSTER_ENV)


def check_trainer(t: dict[str, Any]) -> None:
    """Devices and accelerator exist on this machine (torch is imported only to count
    CUDA or MPS devices)."""
    devices = t.get("devices", 1)
    if _is_int(devices):
        ok = devices >= 1 or devices == -1
    elif isinstance(devices, str):
        s = devices.strip()
        ok = s in ("auto", "-1") or (s.replace(",", "").isdigit() and s != "0")
    else:
        ok = isinstance(devices, list | tuple) and bool(devices) and all(
            _is_int(d) and d >= 0 for d in devices)
    if not ok:
        raise ConfigError(f"trainer.devices={devices!r} must be an integer >= 1, a list of device "
                          f"indices, -1 or auto")
    if not _is_int(t.get("num_nodes", 1)) or t.get("num_nodes", 1) < 1:
        raise ConfigError(f"trainer.num_nodes={t.get('num_nodes')!r} must be an integer >= 1")
    if t.get("num_nodes", 1) > 1 and not cluster_environment():
        raise ConfigError(
            f"trainer.num_nodes={t['num_nodes']} but no cluster environment launched this process "
            f"(none of {', '.join(CLUSTER_ENV)} is set): it would wait for the other nodes; start "
            f"one process per node with srun or torchrun, or set trainer.num_nodes=1")
    precision = t.get("precision", "32-true")
    if str(precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r}; choose one of: {', '.join(PRECISIONS[:8])}")
    strategy = t.get("strategy", "auto")
    if not isinstance(strategy, str) or strategy not in LIGHTNING_STRATEGIES:
        raise ConfigError(f"trainer.strategy={strategy!r}; choose one of: auto, ddp, ddp_spawn, "
                          f"fsdp, deepspeed, ... (Lightning's strategy names)")
    acc = str(t.get("accelerator", "cpu")).lower()
    if t.get("sync_batchnorm", False) not in (True, False):
        raise ConfigError(f"trainer.sync_batchnorm={t.get('sync_batchnorm')!r} must be true or false")
    if t.get("sync_batchnorm") and acc not in ("gpu", "cuda"):
        raise ConfigError(f"trainer.sync_batchnorm=true needs trainer.accelerator=gpu (SyncBatchNorm has "
                          f"no CPU implementation), got accelerator={acc}; use false on CPU")
    if acc in ("gpu", "cuda", "mps"):
        import torch
    if acc in ("gpu", "cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"trainer.accelerator={acc} but no CUDA device is available on this "
                              f"machine; use trainer=cpu (or trainer.accelerator=cpu)")
        if _is_int(devices) and devices > n:
            raise ConfigError(f"trainer.devices={devices} but this machine has {n} CUDA device(s)")
    elif acc == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("trainer.accelerator=mps but MPS is not available on this machine")


def check_logger(s: dict[str, Any]) -> None:
    """``logger.mode`` is one of online/offline/disabled (a typo is an error, never a
    silent upload), and online W&B needs credentials: W&B must never stop at a login prompt."""
    mode = s.get("mode")
    if mode is not None and mode not in WANDB_MODES:
        raise ConfigError(f"logger.mode={mode!r}; choose one of: {', '.join(WANDB_MODES)} (or null)")
    if not s.get("wandb", True):
        return
    if mode is None:
        env = os.environ.get("WANDB_MODE")
        if env and env not in WANDB_MODES + ("dryrun",):
            raise ConfigError(f"WANDB_MODE={env!r}; choose one of: {', '.join(WANDB_MODES)}")
        mode = env or "offline"
    if mode == "online" and not wandb_credentials():
        raise ConfigError(
            "W&B is set to online but no API key was found (WANDB_API_KEY, `wandb login`); "
            "set logger.mode=offline to log locally (upload later with `wandb sync`), or log in first"
        )


def wandb_credentials() -> bool:
    """True when W&B can authenticate without asking: an API key or identity-token file in
    the environment, or a ``.netrc`` entry for the W&B host (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def check_stream(stream) -> None:
    """Every experience has images of the stream's shape in both splits, finite pixel
    values, matching label counts, labels inside its head, and (task-incremental) at
    least two classes present in its training data."""
    import torch

    shape = tuple(stream.input_shape)
    if stream.n_classes < 2:
        raise DataError(f"{stream.name}: the data has {stream.n_classes} class(es); at least 2 are needed")
    for e in stream.experiences:
        t = e.task_id
        for split in ("train", "test"):
            x, y = getattr(e, f"{split}_x"), getattr(e, f"{split}_y")
            if x.shape[0] == 0:
                raise DataError(f"{stream.name}: task {t} has no {split} samples (classes {e.classes})")
            if tuple(x.shape[1:]) != shape:
                raise DataError(f"{stream.name}: task {t} {split} images have shape "
                                f"{tuple(x.shape[1:])}, but the stream's images are {shape}; "
                                f"the train and test files disagree on the image size")
            if x.shape[0] != y.shape[0]:
                raise DataError(f"{stream.name}: task {t} {split} split has {x.shape[0]} images "
                                f"but {y.shape[0]} labels")
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise DataError(f"{stream.name}: task {t} {split} images contain NaN or inf values")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= e.n_outputs):
                raise DataError(f"{stream.name}: task {t} {split} labels are outside 0..{e.n_outputs - 1}")
        present = int(torch.unique(e.train_y).numel())
        if stream.scenario == "task" and (e.n_outputs < 2 or present < 2):
            raise DataError(
                f"{stream.name}: task {t} has {present} class(es) in its training data "
                f"(classes {e.classes}); each task needs at least 2 — check the labels of the data "
                f"or use fewer tasks (benchmark.n_tasks)"
            )


def check_model_fits(model, stream) -> None:
    """One forward pass per task on a test image: the model accepts the stream's images
    (labels per task are checked by ``check_stream``)."""
    import torch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for e in stream.experiences:
                # the heads are built from the stream's head sizes; what can go wrong is the
                # body meeting images of another shape, which this forward pass finds
                model(e.test_x[:1], e.task_id)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"the model does not accept the images of task {e.task_id} "
                        f"(shape {tuple(e.test_x.shape[1:])}): {first}") from err
    finally:
        model.train(was)


def check_train(t: TrainSettings) -> None:
    """``train``: one budget, integer sizes, finite positive lr, known optimiser and schedule."""
    from cl_compress.settings import SCHEDULERS

    if (t.epochs is None) == (t.steps_per_task is None):
        raise ConfigError(
            f"train.epochs={t.epochs} and train.steps_per_task={t.steps_per_task}: set exactly one "
            "budget (e.g. train.steps_per_task=1000, or train.epochs=3 train.steps_per_task=null)")
    checks = [("train.batch_size", t.batch_size, 1), ("train.eval_batch_size", t.eval_batch_size, 1),
              ("train.warmup_steps", t.warmup_steps, 0)]
    checks += [(f"train.{k}", v, 1) for k, v in (("epochs", t.epochs),
                                                  ("steps_per_task", t.steps_per_task)) if v is not None]
    for name, v, lo in checks:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{name}={v!r} must be an integer >= {lo}")
    # number types (and NaN) are checked by guards.check_config before this; here: ranges
    if not 0 < t.lr < FLOAT32_MAX:  # torch casts lr to the weights' float32 in the step
        raise ConfigError(f"train.lr={t.lr!r} must be a finite number > 0 (below {FLOAT32_MAX:.3g})")
    if t.weight_decay < 0:
        raise ConfigError(f"train.weight_decay={t.weight_decay!r} must be >= 0")
    if t.optimizer not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"train.optimizer={t.optimizer!r}; choose one of adam, adamw, sgd")
    if t.scheduler not in SCHEDULERS:
        raise ConfigError(f"train.scheduler={t.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    ms = list(t.milestones or [])
    if not all(isinstance(m, int | float) and not isinstance(m, bool) and 0 < m < 1 for m in ms) \
            or ms != sorted(ms):
        raise ConfigError(f"train.milestones={ms!r} must be increasing fractions in (0, 1) of a "
                          "phase's steps, e.g. [0.5, 0.75]")
    if not 0 < t.gamma <= 1:
        raise ConfigError(f"train.gamma={t.gamma!r} must be in (0, 1]")


def check_data_root(b: dict[str, Any]) -> None:
    """A given ``benchmark.data_root`` must exist (with ``download=true``: at least its parent,
    where the download creates it): found in the config phase, not after the data load."""
    root = b.get("data_root")
    if root in (None, "") or b.get("name") == "synthetic":
        return
    p = Path(os.path.expanduser(str(root)))
    if p.is_dir():
        return
    if p.exists():
        raise ConfigError(f"benchmark.data_root={root!r} is a file, not a folder")
    if b.get("download", True) and p.parent.is_dir():
        return
    raise ConfigError(f"benchmark.data_root={root!r} does not exist"
                      + ("" if b.get("download", True) else " (and benchmark.download=false)")
                      + "; give the folder holding the data, or null for the default search")
