"""Hydra entry point: ``python -m cl_compress.train strategy=packnet benchmark=split_fmnist``.

Composes the config, validates every choice before any data is loaded or any
training starts, builds the objects and calls :func:`cl_compress.engine.loop.run_stream`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from cl_compress.errors import ConfigError, UserError
from cl_compress.rundir.preempt import Preempted

log = logging.getLogger("cl_compress")

MAX_SEGMENT = 200  # bytes of one path component (Linux allows 255)
FLOAT32_MAX = 3.4028234663852886e38


def overrides_subdir(dirname: str | None = None) -> str:
    """The folder a multirun job's overrides add below ``<benchmark>/<strategy>/``, with a
    trailing ``/`` (``""`` when every override is excluded). ``hydra.sweep.subdir`` uses it as
    ``${clc_overrides:}``: without an argument it reads ``hydra.job.override_dirname`` of the
    current job (the overrides not in ``hydra.job.config.override_dirname.exclude_keys``).

    Hydra's ``override_dirname`` joins the overrides as ``key=value,key=value``; a ``/`` in a
    value (a path) would nest folders or climb out with ``..``, so it becomes ``%2F`` (and
    ``%`` itself ``%25``); a name longer than a path component may be is cut and ended with a
    hash of the whole, so distinct overrides keep distinct folders.

    >>> overrides_subdir(""), overrides_subdir("train.lr=0.01")
    ('', 'train.lr=0.01/')
    >>> overrides_subdir("benchmark.data_root=../../x")
    'benchmark.data_root=..%2F..%2Fx/'
    """
    if dirname is None:
        from hydra.core.hydra_config import HydraConfig

        dirname = HydraConfig.get().job.override_dirname
    if not dirname:
        return ""
    safe = dirname.replace("%", "%25").replace("/", "%2F").replace("\0", "")
    if len(safe.encode()) > MAX_SEGMENT:
        digest = hashlib.sha1(safe.encode()).hexdigest()[:10]
        safe = safe.encode()[:MAX_SEGMENT - 11].decode(errors="ignore") + "-" + digest
    return safe + "/"


OmegaConf.register_new_resolver("clc_overrides", overrides_subdir, replace=True)
OmegaConf.register_new_resolver("clc_job", lambda: __import__(
    "cl_compress.rundir.lock", fromlist=["job_suffix"]).job_suffix(), replace=True)  # run dir per job
OmegaConf.register_new_resolver("clc_hydra_subdir", lambda *a: __import__(
    "cl_compress.rundir.lock", fromlist=["hydra_subdir"]).hydra_subdir(*a), replace=True)


def build_and_run(cfg: DictConfig | dict[str, Any], run_dir: str | Path,
                  on_task_end=None) -> dict[str, Any]:
    """Build everything from a composed config and run the stream; returns the results.

    ``on_task_end(t, model, strategy)`` is passed to :func:`runner.run_stream`.
    Before any data is loaded: the config is validated (guards.py, then each object's own
    checks), then the run directory is locked and checked for a finished run or a
    resumable checkpoint, and signal handlers installed (session.py).
    """
    c = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    precheck(c)
    with contextlib.ExitStack() as stack:
        return _build_and_run(c, run_dir, on_task_end, stack)


def _build_and_run(c: dict[str, Any], run_dir: str | Path, on_task_end,
                   stack: contextlib.ExitStack) -> dict[str, Any]:
    from cl_compress.benchmarks import BenchmarkSpec, build_stream
    from cl_compress.engine.loop import TrainerSettings, run_stream
    from cl_compress.engine.task_inference import TaskInferenceSettings
    from cl_compress.models import ContinualModel, build_backbone
    from cl_compress.rundir.session import run_session
    from cl_compress.settings.validate import check_model_fits
    from cl_compress.strategies import TrainSettings, get_strategy
    from cl_compress.strategies.base import variant_of
    from cl_compress.tracking import Tracker, TrackerSettings

    train = TrainSettings(**c["train"])  # checked by precheck (build_and_run)
    params = dict(c["strategy"])
    explicit = params.pop("variant", None)
    name = params.pop("name")
    strategy = get_strategy(name).from_config(params, train, name=name)
    strategy.variant = str(explicit) if explicit not in (None, "") else variant_of(strategy.cfg)
    spec = BenchmarkSpec(**c["benchmark"])
    if spec.scenario not in strategy.scenarios:
        raise ConfigError(
            f"strategy {strategy.name!r} supports the {'/'.join(strategy.scenarios)}-incremental "
            f"scenario(s), not benchmark.scenario={spec.scenario!r}"
        )
    task_inference = TaskInferenceSettings(**(c.get("eval") or {}))
    task_inference.validate()
    data_spec = spec
    if spec.scenario == "class" and strategy.infers_task:
        # trained exactly as task-IL (local labels, one head per task); the task id is
        # inferred at test time (cl_compress.engine.task_inference)
        data_spec = dataclasses.replace(spec, scenario="task")
    else:
        task_inference = None
    model_kw = dict(c["model"])
    model_name = model_kw.pop("name")
    trainer = TrainerSettings(**c["trainer"])
    tracker_settings = TrackerSettings(**c["logger"])
    session = stack.enter_context(run_session(run_dir, c))  # lock, overwrite/resume, signals

    stream = build_stream(data_spec)
    import lightning as L

    L.seed_everything(int(c["seed"]), workers=True, verbose=False)  # model init is seeded
    body, feat = build_backbone(model_name, stream.input_shape, **model_kw)
    model = ContinualModel(body, feat, stream.head_sizes, multi_head=stream.scenario == "task",
                           extra_outputs=task_inference.extra_outputs if task_inference else 0,
                           rotations=task_inference.rotations if task_inference else 1)
    check_model_fits(model, stream)
    group = tracker_settings.group or f"{spec.name}-{spec.scenario}"
    tracker = Tracker(
        run_dir, tracker_settings, name=f"{strategy.label}-{spec.name}-s{c['seed']}", group=group,
        config=wandb_config(c, group, strategy.variant, strategy.label),
        tags=[strategy.name, *([strategy.label] if strategy.variant else []), spec.name,
              spec.scenario, f"seed{c['seed']}"],
        resume_task=session.next_task,
    )
    try:
        results = run_stream(stream, model, strategy, train, trainer, tracker, run_dir,
                             seed=int(c["seed"]), resume=session.resume, config=c,
                             on_task_end=on_task_end, task_inference=task_inference)
    finally:
        tracker.finish()
    return results


def precheck(c: dict[str, Any]) -> None:
    """Every check of the config that needs neither data nor torch; the strategy's
    hyper-parameters are checked next, when its class is imported (:func:`check_strategy`)."""
    from cl_compress.settings import BenchmarkSpec, TrainSettings, validate_spec
    from cl_compress.settings.validate import check_config

    check_config(c)
    _check_train(TrainSettings(**c["train"]))
    validate_spec(BenchmarkSpec(**c["benchmark"]))


def check_strategy(c: dict[str, Any]) -> None:
    """The strategy's hyper-parameters and scenario: imports torch and the strategy (not
    Lightning, not the data)."""
    from cl_compress.settings import TrainSettings
    from cl_compress.strategies import get_strategy

    params = {k: v for k, v in c["strategy"].items() if k not in ("name", "variant")}
    name = c["strategy"]["name"]
    cls = get_strategy(name)
    cls.from_config(params, TrainSettings(**c["train"]), name=name)
    scenario = c["benchmark"].get("scenario", "task")
    if scenario not in cls.scenarios:
        raise ConfigError(f"strategy {name!r} supports the {'/'.join(cls.scenarios)}-incremental "
                          f"scenario(s), not benchmark.scenario={scenario!r}")


HYDRA_ONLY = {".hydra", "status.json", ".lock"}  # what a run that never started leaves, with <job>.log


def remove_unstarted(run_dir: str | Path) -> bool:
    """Remove a run directory that holds only what Hydra and ``run_job`` wrote before the
    run started (``.hydra/``, an empty ``<job>.log``, ``status.json``, ``.lock``): a config
    error leaves no folder behind. Anything else in it (results, a checkpoint, a non-empty
    log) keeps it."""
    import shutil

    d = Path(run_dir)
    if not d.is_dir():
        return False
    for p in d.iterdir():
        if p.name in HYDRA_ONLY or (p.suffix == ".log" and p.is_file() and p.stat().st_size == 0):
            continue
        return False
    shutil.rmtree(d, ignore_errors=True)
    runs = (Path.cwd() / "runs").resolve()
    parent = d.resolve().parent
    while parent != runs and runs in parent.parents:  # empty <benchmark>/<strategy> folders
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return True


def wandb_config(c: dict[str, Any], group: str, variant: str, label: str) -> dict[str, Any]:
    """The config as W&B shows it: the group and the variant actually used (not the
    ``null`` defaults that mean "derive it") and ``method``, the label runs compare by."""
    import copy

    out = copy.deepcopy(c)
    out["logger"] = {**out.get("logger", {}), "group": group}
    out["strategy"] = {**out.get("strategy", {}), "variant": variant or None}
    out["method"] = label
    return out


def _check_train(t) -> None:
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


@hydra.main(version_base=None, config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    run_dir = HydraConfig.get().runtime.output_dir
    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    try:  # before Lightning and the data are imported (and torch, for the first checks)
        precheck(c)
        check_strategy(c)
    except UserError as e:
        if not c.get("keep_going"):
            remove_unstarted(run_dir)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    if not c.get("keep_going") and _env_rank_zero():  # a first line now, not after the imports
        train = c["train"]
        budget = (f"{train['steps_per_task']} steps/task" if train.get("steps_per_task")
                  else f"{train.get('epochs')} epoch(s)/phase")
        print(f"{c['strategy']['name']} on {c['benchmark']['name']} ({budget}, seed {c['seed']}): "
              f"config ok; loading Lightning and the data ...", flush=True)
    import lightning.pytorch  # noqa: F401  (it sets its own log level on import)

    for noisy in ("lightning.pytorch", "lightning.fabric"):  # device banners, tips
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from cl_compress.tracking import is_rank_zero

    res = run_job(c, run_dir, rank_zero=is_rank_zero())
    if res is None or not is_rank_zero():
        return
    print("\n" + final_summary(res, Path(run_dir)))


def _env_rank_zero() -> bool:
    """Rank 0 by the launcher's environment (as Lightning reads it), before Lightning is imported."""
    import os

    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID",
                                                        "JSM_NAMESPACE_RANK"))


def human_bytes(n: float) -> str:
    """``812 B``, ``23.4 KB``, ``1.25 MB`` (powers of 1000, as file managers show)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}" if n < 10 * size else f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def final_summary(res: dict[str, Any], run_dir: Path) -> str:
    """The lines printed at the end of a run: accuracy, forgetting, size against the
    individual baseline, time, and where the results and the W&B run are.

    >>> r = {"method": "packnet", "benchmark": "synthetic", "scenario": "task", "n_tasks": 2,
    ...      "seed": 0, "avg_acc": 0.95, "acc_matrix": [[0.9], [0.9, 1.0]], "bwt": 0.0,
    ...      "forgetting": 0.0, "plasticity": 0.95, "train_seconds": 3.0,
    ...      "timing": {"elapsed_seconds": 4.0, "eval_seconds": 0.5},
    ...      "compression": {"stored_bits": 8e6, "individual_bits": 16e6, "model_bytes": 1.1e6,
    ...                      "ratio_vs_individual": 2.0, "stored_params": 250000}}
    >>> print(final_summary(r, Path("runs/x")))  # doctest: +NORMALIZE_WHITESPACE
    packnet on synthetic (task-incremental, 2 tasks, seed 0)
      accuracy    0.9500 average over tasks after the last one [0.9000 1.0000]
      forgetting  0.0000 (backward transfer +0.0000, plasticity 0.9500)
      size        1.00 MB stored (250,000 parameters; file 1.10 MB)
                  2.00x smaller than 2 individual models (2.00 MB)
      time        0:04 (training 0:03, evaluation 0:00)
      results     runs/x/results.json
      W&B         off
    """
    from cl_compress.engine.progress import clock

    comp = res["compression"]
    T = res["n_tasks"]
    ratio = comp["ratio_vs_individual"]
    vs = f"{ratio:.2f}x smaller than" if ratio >= 1 else f"{1 / ratio:.2f}x larger than"
    timing = res.get("timing", {})
    lines = [
        f"{res.get('method') or res['strategy']} on {res['benchmark']} ({res['scenario']}-incremental, "
        f"{T} tasks, seed {res['seed']})",
        f"  accuracy    {res['avg_acc']:.4f} average over tasks after the last one "
        f"[{' '.join(f'{a:.4f}' for a in res['acc_matrix'][-1])}]",
        f"  forgetting  {res['forgetting']:.4f} (backward transfer {res['bwt']:+.4f}, "
        f"plasticity {res['plasticity']:.4f})",
        *([f"  class-IL    task id inferred by {res['class_il']['score']}: task inference "
            f"{res['class_il']['task_inference_avg']:.4f}; task-IL (task id given) average "
            f"{res['task_il']['avg_acc']:.4f}"] if "class_il" in res else []),
        f"  size        {human_bytes(comp['stored_bits'] / 8)} stored ({comp['stored_params']:,} "
        f"parameters; file {human_bytes(comp['model_bytes'])})",
        f"              {vs} {T} individual models ({human_bytes(comp['individual_bits'] / 8)})",
        f"  time        {clock(timing.get('elapsed_seconds', res['train_seconds']))} (training "
        f"{clock(res['train_seconds'])}, evaluation {clock(timing.get('eval_seconds', 0.0))})",
        f"  results     {run_dir / 'results.json'}",
    ]
    wb = res.get("wandb")
    if not wb:
        lines.append("  W&B         off")
    elif wb.get("mode") == "offline":
        lines.append(f"  W&B         offline run {wb.get('name')} in {wb.get('dir')}")
        lines.append(f"              upload: {wb.get('sync')}")
    else:
        lines.append(f"  W&B         {wb.get('url') or wb.get('path')}")
    return "\n".join(lines)


def run_job(c: dict[str, Any], run_dir: str | Path, rank_zero: bool = True) -> dict[str, Any] | None:
    """One run of ``python -m cl_compress.train`` with its ``status.json`` bookkeeping.

    ``skip_if_done=true``: a run directory that already holds a complete results.json of
    the same config (:func:`cl_compress.rundir.status.is_finished`) is kept as it is (returns
    None); one whose previous attempt of the same config left a ``checkpoint.pt`` continues
    from its last finished task (``resume=true``). ``keep_going=true``: an error is
    recorded in status.json and printed, and the function returns None instead of raising,
    so a multirun launcher goes on with the other runs.
    """
    from cl_compress.engine.loop import CHECKPOINT
    from cl_compress.rundir import status

    run_dir = Path(run_dir)
    digest = status.config_hash(c)
    if c.get("skip_if_done"):
        if status.is_finished(run_dir, c):
            print(f"kept: {run_dir} already holds the results of this config (skip_if_done=true)")
            return None
        old = status.read_status(run_dir) or {}
        if (run_dir / CHECKPOINT).is_file() and old.get("config_hash") == digest:
            c = {**c, "resume": True}
            print(f"resuming {run_dir} from its checkpoint (skip_if_done=true)")
    from cl_compress.rundir.lock import RunDirBusy, RunDirTaken

    status_file = run_dir / status.STATUS
    before = status_file.read_bytes() if status_file.is_file() else None  # another run's record
    from cl_compress.rundir.lock import foreign_files

    if rank_zero and not foreign_files(run_dir):  # never over the user's own status.json
        status.write_status(run_dir, "running", config_hash=digest)
    try:
        res = build_and_run(c, run_dir)
    except (RunDirBusy, RunDirTaken) as e:  # refused: the directory's own run keeps its status
        if rank_zero:
            if before is None:
                status_file.unlink(missing_ok=True)
            else:
                status_file.write_bytes(before)
            if c.get("skip_if_done"):  # a sweep names it as stale, never as done
                status.record_refusal(run_dir, digest, str(e))
        print(f"error: {e}", file=sys.stderr)
        if c.get("keep_going"):
            return None
        sys.exit(2)
    except Preempted as e:  # SIGTERM/SIGUSR1 (BaseException): stop, saying what is kept
        if rank_zero:
            status.write_status(run_dir, "failed", error=f"preempted: {e}")
            print(f"error: {e}", file=sys.stderr)  # one line: rank 0 speaks for every rank
        sys.exit(e.exit_code)
    except Exception as e:
        if rank_zero:
            import traceback

            status.write_status(run_dir, "failed", error=f"{type(e).__name__}: {e}",
                                traceback=traceback.format_exc()[-4000:])
        if c.get("keep_going"):
            print(f"error: {run_dir}: {type(e).__name__}: {e}", file=sys.stderr)
            return None
        if isinstance(e, UserError):
            if isinstance(e, ConfigError) and rank_zero:
                remove_unstarted(run_dir)  # the run never started: leave no folder behind
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if isinstance(e, FloatingPointError):  # NaN/inf loss or weights: nothing non-finite saved
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        raise
    if rank_zero:
        status.write_status(run_dir, "done", avg_acc=res.get("avg_acc"))
    return res


if __name__ == "__main__":
    main()
