"""Hydra entry point: ``python -m cl_compress.train strategy=packnet benchmark=split_fmnist``.

Composes the config, validates every choice before any data is loaded or any
training starts, builds the objects and calls :func:`cl_compress.engine.loop.run_stream`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # a typo answered in one line before Hydra is imported
    from cl_compress.settings.suggest import exit_on_typo

    exit_on_typo(sys.argv[1:])

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from cl_compress.errors import ConfigError, UserError  # noqa: E402
from cl_compress.rundir.preempt import Preempted  # noqa: E402
from cl_compress.settings.catalogue import synthetic_suffix  # noqa: E402

# the strategy config group, generated from every registered strategy's Config dataclass
# (ConfigStore; built-ins read from their source, no torch): whoever calls ``main`` composes it
__import__("cl_compress.compose", fromlist=["register_strategy_configs"]).register_strategy_configs()

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
OmegaConf.register_new_resolver("clc_synthetic", synthetic_suffix, replace=True)  # stand-in data
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
    if "device" not in c:  # what the run trains on, in words (results.json config, W&B config)
        from cl_compress.engine.device import describe_device

        c = {**c, "device": describe_device(c["trainer"])}
    with contextlib.ExitStack() as stack:
        return _build_and_run(c, run_dir, on_task_end, stack)


def _build_and_run(c: dict[str, Any], run_dir: str | Path, on_task_end,
                   stack: contextlib.ExitStack) -> dict[str, Any]:
    from cl_compress.engine.loop import run_stream
    from cl_compress.experiment import build_experiment, plan_experiment
    from cl_compress.report.labels import group_name, run_name
    from cl_compress.rundir.session import run_session
    from cl_compress.strategies.base import StreamInfo, rehearse_setup
    from cl_compress.tracking import Tracker, TrackerSettings

    plan = plan_experiment(c)  # every setting checked (no data)
    strategy, spec = plan.strategy, plan.spec
    tracker_settings = TrackerSettings(**c["logger"])
    session = stack.enter_context(run_session(run_dir, c))  # lock, overwrite/resume, signals
    exp = build_experiment(plan)
    stream = exp.stream
    # a plugin's setup error before W&B starts
    rehearse_setup(strategy, exp.model, StreamInfo(stream.n_tasks, stream.scenario, stream.input_shape,
                                                   stream.head_sizes, stream.name))
    synthetic = "-synthetic" if exp.stream.source.startswith("synthetic") else ""  # a stand-in's data
    group = tracker_settings.group or group_name(spec.name + synthetic, spec.scenario, c["train"])
    tracker = Tracker(
        run_dir, tracker_settings, group=group,
        name=run_name(strategy.label, spec.name + synthetic, spec.scenario, c["train"], c["seed"]),
        config=wandb_config(c, group, strategy.variant, strategy.label),
        tags=[strategy.name, *([strategy.label] if strategy.variant else []), spec.name,
              spec.scenario, f"seed{c['seed']}", *(["synthetic"] if synthetic else [])],
        resume_task=session.next_task,
    )
    try:
        results = run_stream(exp.stream, exp.model, strategy, plan.train, plan.trainer, tracker,
                             run_dir, seed=plan.seed, resume=session.resume, config=c,
                             on_task_end=on_task_end, task_inference=plan.task_inference,
                             checkpoint=session.checkpoint)
    finally:
        tracker.finish()
    return results


def precheck(c: dict[str, Any]) -> None:
    """Every check of the config that needs neither data nor torch (one entry per config
    group: :func:`cl_compress.settings.validate.check_config`); the strategy's
    hyper-parameters are checked next, when its class is imported (:func:`check_strategy`)."""
    from cl_compress.settings.catalogue import check_data_files
    from cl_compress.settings.validate import check_config

    check_config(c)
    check_data_files(c["benchmark"]["name"], c["benchmark"].get("data_root"))  # image files there


def check_strategy(c: dict[str, Any]) -> None:
    """The strategy's hyper-parameters and scenario and how the settings fit together:
    imports torch and the strategy (not Lightning, not the data)."""
    from cl_compress.experiment import plan_experiment

    plan_experiment(c)


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
        from cl_compress.engine.device import describe_device

        c["device"] = describe_device(c["trainer"])
        print(f"{c['strategy']['name']} on {c['benchmark']['name']}-{c['benchmark'].get('scenario')} "
              f"({budget}, seed {c['seed']}) on {c['device']}: config ok; loading Lightning and "
              f"the data ...", flush=True)
        print(config_printout(c), flush=True)
    import lightning.pytorch  # noqa: F401  (it sets its own log level on import)

    for noisy in ("lightning.pytorch", "lightning.fabric"):  # device banners, tips
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from cl_compress.rundir.rank import is_rank_zero

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
      accuracy    0.9500 task-IL, average over tasks after the last one [0.9000 1.0000]
      forgetting  0.0000 task-IL (backward transfer +0.0000, plasticity 0.9500)
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
        *scenario_lines(res),
        f"  size        {human_bytes(comp['stored_bits'] / 8)} stored ({comp['stored_params']:,} "
        f"parameters; file {human_bytes(comp['model_bytes'])})",
        f"              {vs} {T} individual models ({human_bytes(comp['individual_bits'] / 8)})",
        f"  time        {clock(timing.get('elapsed_seconds', res['train_seconds']))} (training "
        f"{clock(res['train_seconds'])}, evaluation {clock(timing.get('eval_seconds', 0.0))})",
        f"  results     {run_dir / 'results.json'}",
    ]
    if (res.get("config") or {}).get("device"):
        lines.insert(-1, f"  device      {res['config']['device']}")
    wb = res.get("wandb")
    if not wb:
        lines.append("  W&B         off")
    elif wb.get("mode") == "offline":
        lines.append(f"  W&B         offline run {wb.get('name')} in {wb.get('dir')}")
        lines.append(f"              upload: {wb.get('sync')}")
    else:
        lines.append(f"  W&B         {wb.get('url') or wb.get('path')}")
    return "\n".join(lines)


def config_printout(c: dict[str, Any]) -> str:
    """The settings a run starts with, one ``group: key=value ...`` line per group (the full
    config is in ``<run_dir>/.hydra/config.yaml`` and results.json ``config``)."""
    lines = ["settings:"]
    for group in ("strategy", "benchmark", "model", "train", "eval", "trainer", "logger"):
        vals = c.get(group)
        if group == "eval" and (c.get("benchmark") or {}).get("scenario") != "class":
            continue  # task inference: class-IL runs only
        if isinstance(vals, dict):
            lines.append(f"  {group + ':':<10} " + " ".join(f"{k}={v}" for k, v in vals.items()
                                                           if v is not None and v != []))
    return "\n".join(lines)


def scenario_lines(res: dict[str, Any]) -> list[str]:
    """The accuracy and forgetting lines of :func:`final_summary`, each figure named by its
    scenario (class-IL runs: the task-IL figures on their own line)."""
    name = "class-IL" if res.get("scenario") == "class" else "task-IL"
    lines = [f"  accuracy    {res['avg_acc']:.4f} {name}, average over tasks after the last one "
             f"[{' '.join(f'{a:.4f}' for a in res['acc_matrix'][-1])}]",
             f"  forgetting  {res['forgetting']:.4f} {name} (backward transfer {res['bwt']:+.4f}, "
             f"plasticity {res['plasticity']:.4f})"]
    til = res.get("task_il")
    if name == "class-IL" and til:
        ci = res.get("class_il") or {}
        how = (f"task id inferred by {ci['score']}: task inference "
               f"{ci['task_inference_avg']:.4f}; " if ci else "one shared head; ")
        lines.append(f"  task-IL     {til['avg_acc']:.4f} (task id given), forgetting "
                     f"{til['forgetting']:.4f}; {how.rstrip('; ')}")
    return lines


def run_job(c: dict[str, Any], run_dir: str | Path, rank_zero: bool = True) -> dict[str, Any] | None:
    """One run of ``python -m cl_compress.train`` with its ``status.json`` bookkeeping.

    ``skip_if_done=true``: a run directory that already holds a complete results.json of
    the same config (:func:`cl_compress.rundir.status.is_finished`) is kept as it is (returns
    None); one whose previous attempt of the same config left a ``checkpoint.pt`` continues
    from its last finished task (``resume=true``). ``keep_going=true``: an error is
    recorded in status.json and printed, and the function returns None instead of raising,
    so a multirun launcher goes on with the other runs.
    """
    from cl_compress.engine.callbacks import CHECKPOINT
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


def cli() -> None:
    """``python -m cl_compress.train`` and ``clc-train``: the strategy config group for every
    registered strategy, an unknown strategy refused in one line, then Hydra's ``main``."""
    from cl_compress.compose import check_strategy_choice

    try:
        check_strategy_choice(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
