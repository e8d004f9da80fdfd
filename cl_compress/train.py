"""Hydra entry point: ``python -m cl_compress.train strategy=packnet benchmark=split_fmnist``.

Composes the config, validates every choice before any data is loaded or any
training starts, builds the objects and calls :func:`cl_compress.runner.run_stream`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, UserError
from .preempt import Preempted

log = logging.getLogger("cl_compress")

MAX_SEGMENT = 200  # bytes of one path component (Linux allows 255)


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


def build_and_run(cfg: DictConfig | dict[str, Any], run_dir: str | Path,
                  on_task_end=None) -> dict[str, Any]:
    """Build everything from a composed config and run the stream; returns the results.

    ``on_task_end(t, model, strategy)`` is passed to :func:`runner.run_stream`.
    Before any data is loaded: the config is validated (guards.py, then each object's own
    checks), then the run directory is locked and checked for a finished run or a
    resumable checkpoint, and signal handlers installed (session.py).
    """
    from .guards import check_config

    c = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    check_config(c)
    with contextlib.ExitStack() as stack:
        return _build_and_run(c, run_dir, on_task_end, stack)


def _build_and_run(c: dict[str, Any], run_dir: str | Path, on_task_end,
                   stack: contextlib.ExitStack) -> dict[str, Any]:
    from .benchmarks import BenchmarkSpec, build_stream, validate_spec
    from .guards import check_model_fits
    from .models import ContinualModel, build_backbone
    from .runner import TrainerSettings, run_stream
    from .session import run_session
    from .strategies import TrainSettings, get_strategy
    from .strategies.base import variant_of
    from .tracking import Tracker, TrackerSettings

    train = TrainSettings(**c["train"])
    _check_train(train)
    params = dict(c["strategy"])
    explicit = params.pop("variant", None)
    strategy = get_strategy(params.pop("name")).from_config(params, train)
    strategy.variant = str(explicit) if explicit not in (None, "") else variant_of(strategy.cfg)
    spec = BenchmarkSpec(**c["benchmark"])
    validate_spec(spec)
    if spec.scenario not in strategy.scenarios:
        raise ConfigError(
            f"strategy {strategy.name!r} supports the {'/'.join(strategy.scenarios)}-incremental "
            f"scenario(s), not benchmark.scenario={spec.scenario!r}"
        )
    model_kw = dict(c["model"])
    model_name = model_kw.pop("name")
    trainer = TrainerSettings(**c["trainer"])
    tracker_settings = TrackerSettings(**c["logger"])
    session = stack.enter_context(run_session(run_dir, c))  # lock, overwrite/resume, signals

    stream = build_stream(spec)
    import lightning as L

    L.seed_everything(int(c["seed"]), workers=True, verbose=False)  # model init is seeded
    body, feat = build_backbone(model_name, stream.input_shape, **model_kw)
    model = ContinualModel(body, feat, stream.head_sizes, multi_head=stream.scenario == "task")
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
                             on_task_end=on_task_end)
    finally:
        tracker.finish()
    return results


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
    from .strategies.base import SCHEDULERS

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
    for name, v in (("train.lr", t.lr), ("train.weight_decay", t.weight_decay),
                    ("train.momentum", t.momentum), ("train.gamma", t.gamma)):
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
            raise ConfigError(f"{name}={v!r} must be a number")
    if not 0 < t.lr < float("inf"):
        raise ConfigError(f"train.lr={t.lr!r} must be a finite number > 0")
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
    import lightning.pytorch  # noqa: F401  (it sets its own log level on import)

    for noisy in ("lightning.pytorch", "lightning.fabric"):  # device banners, tips
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .tracking import is_rank_zero

    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    res = run_job(c, run_dir, rank_zero=is_rank_zero())
    if res is None or not is_rank_zero():
        return
    comp = res["compression"]
    print(
        f"\n{res['strategy']} on {res['benchmark']} ({res['scenario']}-IL, seed {res['seed']}): "
        f"avg_acc={res['avg_acc']:.4f} bwt={res['bwt']:+.4f} forgetting={res['forgetting']:.4f} "
        f"plasticity={res['plasticity']:.4f}\n  stored_params={comp['stored_params']} "
        f"ratio_vs_individual={comp['ratio_vs_individual']:.2f}x model_bytes={comp['model_bytes']} "
        f"train_seconds={res['train_seconds']:.1f}\n  results: {Path(run_dir) / 'results.json'}"
    )


def run_job(c: dict[str, Any], run_dir: str | Path, rank_zero: bool = True) -> dict[str, Any] | None:
    """One run of ``python -m cl_compress.train`` with its ``status.json`` bookkeeping.

    ``skip_if_done=true``: a run directory that already holds a complete results.json of
    the same config (:func:`cl_compress.status.is_finished`) is kept as it is (returns
    None); one whose previous attempt of the same config left a ``checkpoint.pt`` continues
    from its last finished task (``resume=true``). ``keep_going=true``: an error is
    recorded in status.json and printed, and the function returns None instead of raising,
    so a multirun launcher goes on with the other runs.
    """
    from . import status
    from .runner import CHECKPOINT

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
    if rank_zero:
        status.write_status(run_dir, "running", config_hash=digest)
    try:
        res = build_and_run(c, run_dir)
    except Preempted as e:  # SIGTERM/SIGUSR1 (BaseException): stop, saying what is kept
        if rank_zero:
            status.write_status(run_dir, "failed", error=f"preempted: {e}")
        print(f"error: {e}", file=sys.stderr)
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
