"""Launch a strategy comparison: one Hydra multirun per benchmark over strategies × seeds
(plus named variants), every run in one sweep directory and one W&B group, then the report.

    python -m cl_compress.launch.sweep [--preset cpu] [--benchmarks "split_fmnist permuted_fmnist"]
        [--strategies "packnet lrpet"] [--seeds "0 1 2"] [--dir DIR] [--out DIR] [--dry-run]
        [--launcher joblib|basic|submitit_local|submitit_slurm] [--parallel N]
        [hydra overrides for every run, e.g. train.epochs=1]

The runs are started by a Hydra launcher (``hydra/launcher``): ``joblib`` (default: ``--parallel``
runs at a time on this machine), ``basic`` (one after another, in the multirun's process),
``submitit_slurm`` (a SLURM job array per benchmark) or ``submitit_local`` (submitit's local
executor: the SLURM code path on this machine). Every run gets ``skip_if_done=true
keep_going=true``: running the same command with the same ``--dir`` again keeps the finished
runs and runs only the missing ones, and a failing run never stops the others (it is listed
as failed in sweep.json and the report). Progress (done / failed / running / pending, ETA) is
printed as it changes and written to sweep.json ``progress``.

Default: every registered strategy (``registered_names()``: built-in, entry point or
``$CLC_STRATEGY_MODULES``), seeds 0 1 2, split_fmnist. A preset
(``cl_compress/launch/presets/<name>.yaml``, see experiments/README.md) names the benchmarks, seeds,
shared overrides, per-strategy overrides and variants (e.g. LRPET's truncate baseline).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from cl_compress.compose import compose_config
from cl_compress.errors import ConfigError
from cl_compress.rundir.io import write_json

PRESET_PACKAGE = "cl_compress.launch"  # the shipped presets: package data cl_compress/launch/presets/*.yaml
LOCAL_PRESET_DIR = Path("presets")  # your own (make tune writes here): ./presets/<name>.yaml
PRESET_KEYS = {"description", "target", "benchmarks", "strategies", "seeds", "overrides",
               "benchmark_overrides", "strategy_overrides", "variants", "out", "parallel", "threads",
               "budget_exceptions", "launcher", "tuning"}
REPORT_FILES = ("report.md", "runs.csv", "summary.json", "sweep.json", "dashboard.json")
CONFIG_DIR = "strategy_configs"  # generated configs (variants, preset overrides), in the sweep dir
LAUNCHERS = ("joblib", "basic", "submitit_local", "submitit_slurm")
SKIP_DIRS = (CONFIG_DIR, ".submitit")  # folders of a sweep dir that hold no run


def launcher_overrides(launcher: str, parallel: int) -> list[str]:
    """Hydra overrides that select ``launcher`` and give it ``parallel``: ``n_jobs`` of
    joblib, ``array_parallelism`` of a SLURM array (when > 1); submitit's local executor
    starts every run of a multirun at once.

    >>> launcher_overrides("joblib", 2), launcher_overrides("basic", 4)
    (['hydra/launcher=joblib', 'hydra.launcher.n_jobs=2'], [])
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose one of {list(LAUNCHERS)}")
    if launcher == "basic":
        return []
    ovs = [f"hydra/launcher={launcher}"]
    if launcher == "joblib":
        ovs.append(f"hydra.launcher.n_jobs={max(1, parallel)}")
    elif launcher == "submitit_slurm" and parallel > 1:
        ovs.append(f"hydra.launcher.array_parallelism={parallel}")
    return ovs


def shipped_presets() -> dict[str, Traversable]:
    """The presets shipped with the package (``cl_compress/launch/presets/<name>.yaml``), read through
    importlib.resources so they resolve in an installed wheel as in a source checkout."""
    root = resources.files(PRESET_PACKAGE).joinpath("presets")
    return {p.name.removesuffix(".yaml"): p for p in root.iterdir() if p.name.endswith(".yaml")}


def load_preset(name: str | None) -> dict[str, Any]:
    """A preset by path, by name of a shipped one (``cl_compress/launch/presets/<name>.yaml``) or of
    one in ``./presets/``; ``{}`` for none."""
    if not name:
        return {}
    shipped = shipped_presets()
    path: Path | Traversable = Path(name)
    if not path.is_file():
        path = shipped.get(name) or LOCAL_PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(set(shipped) | {p.stem for p in LOCAL_PRESET_DIR.glob("*.yaml")})
        raise ConfigError(f"unknown preset {name!r}; choose one of {known} or give a YAML path")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:  # a syntax error, or a tag such as !!python/... (never run)
        first = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"preset {path} is not plain YAML ({type(e).__name__}: {first}); a preset "
                          f"is a mapping of {sorted(PRESET_KEYS)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} is a YAML {type(data).__name__}, not a mapping of "
                          f"{sorted(PRESET_KEYS)}")
    unknown = sorted(set(data) - PRESET_KEYS)
    if unknown:
        raise ConfigError(f"preset {path} has unknown key(s) {unknown}; valid: {sorted(PRESET_KEYS)}")
    return data | {"preset": path.name.removesuffix(".yaml")}


def merge_overrides(*groups: list[str]) -> list[str]:
    """Concatenate Hydra overrides; a later ``key=value`` replaces an earlier one for the same
    key (Hydra itself rejects a key given twice)."""
    out: dict[str, str] = {}
    for group in groups:
        for ov in group:
            out[ov.split("=", 1)[0].lstrip("+~")] = ov
    return list(out.values())


# keys never in a run's folder name: already in the path, or not a setting of the experiment
DIR_EXCLUDE = ("seed", "strategy", "strategy.name", "benchmark", "benchmark.name",
               "benchmark.scenario", "resume", "overwrite", "skip_if_done", "keep_going",
               "trainer.progress_bar",
               "logger", "logger.wandb", "logger.project", "logger.entity", "logger.mode",
               "logger.group", "logger.tags")
SWEEP_SYNTAX = re.compile(r"^(choice|range|glob|interval|tag|sort|shuffle)\(")


def is_sweep(value: str) -> bool:
    """Whether a Hydra override value sweeps several values (``a,b``, ``range(..)`` ...).

    >>> [is_sweep(v) for v in ("0.1", "0.1,0.2", "[1,2]", "range(3)", "'a,b'")]
    [False, True, False, True, False]
    """
    depth, quote = 0, ""
    for ch in value:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return bool(SWEEP_SYNTAX.match(value.strip()))


def hydra_quote(value: str) -> str:
    """``value`` as a quoted Hydra override value: any legal path (non-ASCII letters, commas,
    spaces, ``=``, quotes) reaches the run as it is, never split into a sweep.

    >>> hydra_quote("/home/józef/a, b"), hydra_quote("o'brien")
    ("'/home/józef/a, b'", "'o\\\\'brien'")
    """
    value = re.sub(r"(\\+)(?=')", lambda m: m.group(1) * 2, str(value))
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)  # before the closing quote
    return "'" + value.replace("'", "\\'") + "'"


def _exclude_keys(common: list[str], fixed: list[str]) -> str:
    """``hydra.job.config.override_dirname.exclude_keys`` for a sweep's multirun: the keys of
    :data:`DIR_EXCLUDE` and the preset's single-valued overrides still in force (``fixed``
    entries not replaced by a command-line override). Hydra's own ``hydra.*`` overrides are
    never part of ``override_dirname``."""
    keys = list(DIR_EXCLUDE)
    for ov in common:
        key, _, value = ov.partition("=")
        if ov in fixed and not is_sweep(value):
            keys.append(key.lstrip("+~"))
    keys = list(dict.fromkeys(keys))
    return f"hydra.job.config.override_dirname.exclude_keys=[{','.join(keys)}]"


def _scenario(overrides: list[str]) -> str:
    for ov in overrides:
        if ov.split("=", 1)[0].lstrip("+") == "benchmark.scenario":
            return ov.split("=", 1)[1]
    return "task"


def check_budget(preset: dict[str, Any], benchmarks: list[str], extra: list[str]) -> str:
    """Refuse a comparison whose strategies cannot get equal training budgets.

    Equal budgets are counted in optimiser steps per task (``train.steps_per_task``, the
    default): every strategy then trains exactly that many steps per task over all its
    phases (retrain, fine-tune included). A budget in epochs gives strategies with extra
    phases more steps, so it is refused unless the preset says so on purpose with the entry
    ``budget_exceptions: {"*": <reason>}`` (an exception naming one strategy, e.g.
    Ada-QPacknet's search steps, does not unlock an epoch budget for all of them). Swept
    values (``a,b``, ``range(..)``) are checked one by one. Returns a one-line description.
    """
    exceptions = preset.get("budget_exceptions") or {}
    if not isinstance(exceptions, dict) or not all(isinstance(v, str) and v for v in exceptions.values()):
        raise ConfigError("preset budget_exceptions must map a strategy or variant to a reason (text)")
    from hydra.errors import HydraException

    lines = []
    for bench in benchmarks:
        ovs = merge_overrides([f"benchmark={bench}"], preset.get("overrides") or [],
                              (preset.get("benchmark_overrides") or {}).get(bench, []), extra)
        ovs = [o for o in ovs if not o.lstrip("+~").startswith(("hydra.", "hydra/", "strategy."))]
        for combo in _expand(ovs):
            try:
                train = compose_config(combo)["train"]
            except HydraException as e:
                raise ConfigError(f"{bench}: {str(e).splitlines()[0]}") from e
            if train.get("steps_per_task") is None and "*" not in exceptions:
                raise ConfigError(
                    f"{bench}: the budget is train.epochs={train.get('epochs')} per phase, so "
                    "strategies with extra phases (PackNet retrain, LRPET truncate fine-tune) train "
                    "more steps than the others; set train.steps_per_task=N (equal optimiser steps "
                    "per task) or say so on purpose in the preset: budget_exceptions: {'*': reason}")
            unit = (f"{train['steps_per_task']} optimiser steps/task" if train.get("steps_per_task")
                    else f"{train.get('epochs')} epoch(s)/phase")
            line = f"{bench}: {unit}, batch {train['batch_size']}"
            if line not in lines:
                lines.append(line)
    return "; ".join(lines)


def _expand(overrides: list[str]) -> list[list[str]]:
    """Every combination of the swept values in ``overrides`` (Hydra's own parser).

    >>> _expand(["a=1", "b=2,3"])
    [['a=1', 'b=2'], ['a=1', 'b=3']]
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [list(c) for c in BasicSweeper.split_arguments(parsed, None)[0]]


def strategy_config(strategy: str, overrides: list[str], label: str, variant: str | None = None) -> str:
    """A generated ``strategy`` config: the registered config plus ``strategy.<key>=<value>``
    overrides, validated now (an error fails before any training, not inside the multirun).
    ``variant`` (a preset's variant label) becomes ``strategy.variant``: W&B names and tags
    the run ``<strategy>[<variant>]``, apart from the strategy's own runs."""
    import dataclasses

    from cl_compress.strategies import get_strategy
    from cl_compress.strategies.base import validate_config

    params: dict[str, Any] = {}
    for ov in overrides:
        key, _, value = ov.partition("=")
        if not key.startswith("strategy.") or not value:
            raise ConfigError(f"{label}: {ov!r} is not a strategy.<param>=<value> override; a "
                              "variant may change only its strategy's hyper-parameters (same budget)")
        params[key.removeprefix("strategy.")] = yaml.safe_load(value)
    variant = variant or params.pop("variant", None)
    cls = get_strategy(strategy)
    unknown = sorted(set(params) - {f.name for f in dataclasses.fields(cls.Config)})
    if unknown:
        raise ConfigError(f"{label}: unknown parameter(s) {unknown} for strategy {strategy!r}")
    cfg = dataclasses.replace(cls.Config(), **params)
    validate_config(cfg)
    cfg.validate()
    from cl_compress.strategies.base import variant_of

    if variant and not variant_of(cfg):  # a variant its settings name already keeps that label
        params["variant"] = variant
    body = yaml.safe_dump(params, sort_keys=False)
    return f"# generated by cl_compress.launch.sweep ({label})\ndefaults:\n  - {strategy}\n  - _self_\n{body}"


def plan(preset: dict[str, Any], strategies: list[str], seeds: list[int], benchmarks: list[str],
         name: str, sweep_dir: Path, extra: list[str], launcher: str = "basic",
         parallel: int = 1) -> tuple[list[list[str]], dict[str, str], list[str]]:
    """One ``python -m cl_compress.train -m`` argument list per benchmark, the generated
    strategy configs (``{option: yaml}``) and notes on skipped strategies.

    Each multirun sweeps strategies × seeds; a strategy with preset overrides runs as the
    generated option ``<strategy>-<preset>``, a variant as ``<label>``; every run is written
    to ``<sweep dir>/<benchmark>-<scenario>/<option>/[<overrides>/]s<seed>``, where
    ``<overrides>`` (Hydra's ``override_dirname``) names the overrides given on the command
    line (``extra``) and any setting swept with ``a,b``: two values of one setting never share
    a folder. The preset's own single-valued overrides are the same for every run of the
    sweep and stay out of the path (see :func:`_exclude_keys`). Every multirun uses
    ``launcher`` (:func:`launcher_overrides`) with ``skip_if_done=true keep_going=true``.
    """
    from cl_compress.strategies import get_strategy

    tag = preset.get("preset", "custom")
    per_strategy = preset.get("strategy_overrides") or {}
    configs = {f"{s}-{tag}": strategy_config(s, ov, f"strategy_overrides.{s}")
               for s, ov in per_strategy.items() if s in strategies}
    for label, v in (preset.get("variants") or {}).items():
        if v["strategy"] in strategies:
            configs[label] = strategy_config(v["strategy"], [*per_strategy.get(v["strategy"], []),
                                                              *(v.get("overrides") or [])], label,
                                              variant=label)
    jobs, notes = [], []
    for bench in benchmarks:
        fixed = merge_overrides(preset.get("overrides") or [],
                                (preset.get("benchmark_overrides") or {}).get(bench, []))
        common = merge_overrides(
            [f"benchmark={bench}", "trainer.progress_bar=false", "skip_if_done=true",
             "keep_going=true", *launcher_overrides(launcher, parallel)], fixed, extra,
            [f"logger.group={hydra_quote(name)}", f"hydra.sweep.dir={hydra_quote(str(sweep_dir))}",
             "hydra.sweep.subdir=${benchmark.name}-${benchmark.scenario}/"
             "${hydra:runtime.choices.strategy}/${clc_overrides:}s${seed}"])
        common.append(_exclude_keys(common, fixed))
        scenario = _scenario(common)
        options = []
        for s in strategies:
            if scenario not in get_strategy(s).scenarios:
                notes.append(f"{s} skipped on {bench}: it supports {get_strategy(s).scenarios}, "
                             f"not the {scenario}-incremental scenario")
                continue
            options.append(f"{s}-{tag}" if s in per_strategy else s)
            options += [lab for lab, v in (preset.get("variants") or {}).items() if v["strategy"] == s]
        if options:
            search = ([f"hydra.searchpath=[{hydra_quote(f'file://{sweep_dir / CONFIG_DIR}')}]"]
                      if configs else [])
            jobs.append(["-m", f"strategy={','.join(options)}",
                         f"seed={','.join(str(s) for s in seeds)}", *common, *search])
    return jobs, configs, notes


def machine() -> str:
    """A one-line description of this machine (CPU cores, GPU)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def copy_report(sweep_dir: Path, out: Path) -> None:
    """Copy report.md, its PNGs and tables to ``out``. The new files are written completely
    into a temporary sibling folder first and then moved over the old ones one by one
    (``os.replace``: each file is the old or the new one, never a truncated one); only then
    are the PNGs of the previous report that the new one no longer links removed, nothing
    else. A failure (full disk, a kill) leaves the previous report in place."""
    import tempfile

    from cl_compress.report import portable_text

    out.mkdir(parents=True, exist_ok=True)
    old_md = out / "report.md"
    linked = re.findall(r"\]\(([^)/]+\.png)\)", old_md.read_text()) if old_md.is_file() else []
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.report-", dir=out.parent))
    try:
        new = []
        for f in [*sweep_dir.glob("*.png"), *(sweep_dir / f for f in REPORT_FILES)]:
            if not f.is_file():
                continue
            if f.suffix in (".md", ".json", ".csv"):  # no machine paths in a committed report
                text = f.read_text()
                if f.name == "sweep.json":  # an older sweep.json may hold a storage secret
                    from cl_compress.rundir.redact import redact_tuning

                    with contextlib.suppress(ValueError, AttributeError):
                        data = json.loads(text)
                        text = json.dumps({**data, "tuning": redact_tuning(data.get("tuning"))},
                                          indent=2)
                (stage / f.name).write_text(portable_text(text, sweep_dir))
            else:
                shutil.copy2(f, stage / f.name)
            new.append(f.name)
        for name in new:  # the staged files are on disk before any swap
            with open(stage / name, "rb") as fh:
                os.fsync(fh.fileno())
        for name in sorted(new, key=lambda n: n == "report.md"):  # report.md last: its links exist
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for name in [*linked, *REPORT_FILES]:
        if name not in new and (out / name).is_file():
            (out / name).unlink()


def count_runs(args: list[str]) -> int | None:
    """How many runs the multirun ``args`` starts (Hydra's own expansion of ``a,b``,
    ``range(..)`` ... sweeps); None when it cannot be told without composing the config.

    >>> count_runs(["-m", "strategy=naive,packnet", "seed=0,1,2", "train.lr=0.1"])
    6
    """
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        ovs = [a for a in args if a != "-m" and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
        batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(ovs), None)
        return sum(len(b) for b in batches)
    except Exception:
        return None


def _clock(seconds: float) -> str:
    """``1 h 02 min`` / ``3 min`` / ``40 s``.

    >>> _clock(3725), _clock(185), _clock(40)
    ('1 h 02 min', '3 min', '40 s')
    """
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


class Progress:
    """Runs of a sweep directory counted from their files: *done* (a complete results.json;
    *kept* when written before this invocation started), *failed* / *running* (status.json
    written by this invocation), *pending* (the rest of ``total``), and an ETA from the rate
    at which this invocation finishes runs."""

    def __init__(self, sweep_dir: Path, total: int | None, t0: float | None = None):
        self.sweep_dir, self.total = sweep_dir, total
        self.t0 = time.time() if t0 is None else t0
        self.last: tuple | None = None

    def run_dirs(self) -> set[Path]:
        dirs = set()
        for name in ("status.json", "results.json"):
            for p in self.sweep_dir.rglob(name):
                rel = p.parent.relative_to(self.sweep_dir).parts
                if p.parent != self.sweep_dir and not (rel and rel[0] in SKIP_DIRS):
                    dirs.add(p.parent)
        return dirs

    def scan(self) -> dict[str, Any]:
        from cl_compress.rundir.status import complete_results, read_refusal, read_status

        done, kept, failed, running, finished_now, stale = 0, 0, [], [], 0, []
        for d in sorted(self.run_dirs()):
            st = read_status(d) or {}
            fresh = st.get("updated", 0) >= self.t0 - 1
            refused = read_refusal(d) or {}
            if refused.get("updated", 0) >= self.t0 - 1 and not (
                    fresh and st.get("state") in ("running", "done")):
                # this sweep's run was refused: the folder holds another config's run
                stale.append({"run": str(d.relative_to(self.sweep_dir)), "error": refused.get("error")})
            elif fresh and st.get("state") == "running":
                running.append(str(d.relative_to(self.sweep_dir)))
            elif fresh and st.get("state") == "failed":
                failed.append({"run": str(d.relative_to(self.sweep_dir)), "error": st.get("error")})
                finished_now += 1
            elif complete_results(d) is not None:
                done += 1
                if fresh and st.get("state") == "done":
                    finished_now += 1
                else:
                    kept += 1
        seen = done + len(failed) + len(running) + len(stale)
        total = self.total if self.total is not None else seen
        total = max(total, seen)
        pending = total - seen
        now = time.time()
        elapsed = now - self.t0
        left = total - done - len(failed) - len(stale)
        eta = elapsed / finished_now * left if finished_now and left else (0.0 if not left else None)
        return {"total": total, "done": done, "kept": kept, "failed": len(failed),
                "running": len(running), "pending": pending, "stale": len(stale),
                "elapsed_seconds": round(elapsed, 1),
                "eta_seconds": None if eta is None else round(eta, 1),
                "eta_at": None if eta is None else dt.datetime.fromtimestamp(now + eta).isoformat(
                    timespec="seconds"),
                "updated_at": dt.datetime.fromtimestamp(now).isoformat(timespec="seconds"),
                "failed_runs": failed, "running_runs": running, "stale_runs": stale}

    @staticmethod
    def line(p: dict[str, Any]) -> str:
        eta = ("ETA unknown" if p["eta_seconds"] is None else
               f"ETA {_clock(p['eta_seconds'])} ({p['eta_at'][11:16]})" if p["eta_seconds"] else "finished")
        return (f"[sweep] {p['done']}/{p['total']} done ({p['kept']} kept), {p['failed']} failed, "
                + (f"{p['stale']} refused (stale), " if p.get("stale") else "")
                + f"{p['running']} running, {p['pending']} pending; {eta}")

    def update(self, meta: dict[str, Any], sweep_dir: Path, force: bool = False) -> None:
        """Rescan; when the counts changed (or ``force``), print the line and rewrite
        sweep.json ``progress``."""
        p = self.scan()
        key = (p["done"], p["failed"], p["running"], p["pending"], p["stale"])
        if key != self.last or force:
            self.last = key
            meta["progress"] = {k: v for k, v in p.items() if k != "running_runs"}
            write_json(sweep_dir / "sweep.json", meta)
            print(self.line(p), flush=True)


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_jobs(cmds: list[list[str]], meta: dict[str, Any], sweep_dir: Path,
             launcher: str = "basic", threads: int | None = None, total: int | None = None,
             poll: float = 2.0) -> Progress:
    """Start the multiruns (each logs to ``multirun-<k>.log``), follow the runs' files and
    record each multirun's exit code and duration in ``meta["jobs"]`` / sweep.json.

    With a local launcher (joblib, basic) the multiruns run one after another, the launcher
    running ``--parallel`` runs of each at once; with submitit they all start at once (each
    submits its job array). Interrupting the sweep (Ctrl-C, SIGTERM) stops every multirun
    and the runs it started on this machine; finished runs stay finished.

    ``threads`` sets OMP_NUM_THREADS for the runs unless the environment sets it already:
    on a few shared cores, several OpenMP threads per process oversubscribe the CPU (on the
    2-core machine at load ~6, two threads made naive's training 17x slower than one).
    """
    env = dict(os.environ)
    if threads:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    progress = Progress(sweep_dir, total)
    together = launcher.startswith("submitit")
    waiting, live = list(range(len(cmds))), {}

    def start(k: int) -> None:
        job = meta["jobs"][k]
        job["log"] = f"multirun-{k}.log"
        print(f"+ [{k}] {shlex.join(cmds[k])}  > {job['log']}", flush=True)
        with open(sweep_dir / job["log"], "w") as f:
            live[k] = (subprocess.Popen(cmds[k], stdout=f, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True), time.perf_counter())

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    write_json(sweep_dir / "sweep.json", meta)
    try:
        progress.update(meta, sweep_dir, force=True)
        while waiting or live:
            while waiting and (together or not live):
                start(waiting.pop(0))
            time.sleep(poll)
            for k, (proc, t0) in list(live.items()):
                if proc.poll() is None:
                    continue
                del live[k]
                job = meta["jobs"][k]
                job["rc"], job["seconds"] = proc.returncode, round(time.perf_counter() - t0, 1)
                print(f"  [{k}] multirun exit code {proc.returncode} after {job['seconds']:.0f} s",
                      flush=True)
                if proc.returncode:
                    print(_tail(sweep_dir / job["log"]), file=sys.stderr, flush=True)
                write_json(sweep_dir / "sweep.json", meta)
            progress.update(meta, sweep_dir)
    except KeyboardInterrupt:
        print("\n[sweep] interrupted: stopping the multiruns; run the same command again "
              "(same --dir) to finish the missing runs", file=sys.stderr, flush=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
        for proc, _ in live.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in live.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
    progress.update(meta, sweep_dir)
    return progress


def read_sweep_json(sweep_dir: Path) -> dict[str, Any]:
    """The sweep.json of an earlier attempt ({} for none); a truncated or malformed one is a
    one-line error (it is left as it is, for the user to look at)."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is unreadable (truncated or malformed: {e}); move it away to "
                          f"start this sweep directory's record afresh, or give a new --dir") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not a sweep record; move it "
                          f"away, or give a new --dir")
    return data


def _words(text: str | None) -> list[str] | None:
    return None if text is None else text.replace(",", " ").split()


def main(argv: list[str] | None = None) -> int:
    from cl_compress.report import write_report
    from cl_compress.rundir.redact import redact_tuning
    from cl_compress.strategies.registry import registered_names

    p = argparse.ArgumentParser(prog="python -m cl_compress.launch.sweep",
                                description=__doc__.split("\n")[0])
    p.add_argument("--preset",
                   help="a shipped preset (cl_compress/launch/presets/<name>.yaml), one in ./presets/, "
                        "or a path")
    p.add_argument("--benchmarks", help="space-separated benchmark names")
    p.add_argument("--strategies", help="space-separated strategy names (default: all registered)")
    p.add_argument("--seeds", help="space-separated seeds (default: 0 1 2)")
    p.add_argument("--dir", help="sweep directory (default: runs/compare/<preset>-<time>)")
    p.add_argument("--out", help="also copy the report there (default: the preset's `out`)")
    p.add_argument("--launcher", choices=LAUNCHERS,
                   help="Hydra launcher of the runs (default: the preset's, else joblib)")
    p.add_argument("--parallel", type=int,
                   help="runs at once: joblib n_jobs, SLURM array parallelism (default 1)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between progress checks")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS of each run, unless already set")
    p.add_argument("--dry-run", action="store_true", help="print the multirun commands only")
    args, extra = p.parse_known_args(argv)
    from cl_compress.strategies import get_strategy

    try:
        preset = load_preset(args.preset)
        known = registered_names()
        want = _words(args.strategies) or preset.get("strategies") or "all"
        strategies = known if want == "all" else list(want)
        bad = sorted(set(strategies) - set(known))
        if bad:
            raise ConfigError(f"unknown strategies {bad}; registered (built-in or entry point): {known}")
        for s in strategies:  # a plugin that fails to import says why, before anything runs
            get_strategy(s)
        seeds = [int(s) for s in (_words(args.seeds) or preset.get("seeds") or [0, 1, 2])]
        benchmarks = _words(args.benchmarks) or preset.get("benchmarks") or ["split_fmnist"]
        stamp = dt.datetime.now()
        name = f"{preset.get('preset', 'compare')}-{stamp:%Y%m%d-%H%M%S}"
        sweep_dir = Path(args.dir or Path("runs") / "compare" / name).resolve()
        if args.dir:
            name = sweep_dir.name
        budget = check_budget(preset, benchmarks, extra)
        parallel = int(args.parallel or preset.get("parallel") or 1)
        launcher = args.launcher or preset.get("launcher") or "joblib"
        jobs, configs, notes = plan(preset, strategies, seeds, benchmarks, name, sweep_dir, extra,
                                    launcher, parallel)
        threads = args.threads or preset.get("threads")
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmds = [[sys.executable, "-m", "cl_compress.train", *j] for j in jobs]
    if args.dry_run:
        for option, text in configs.items():
            print(f"# {sweep_dir / CONFIG_DIR}/strategy/{option}.yaml\n{text}")
        print("\n".join(shlex.join(c) for c in cmds))
        return 0
    sweep_dir.mkdir(parents=True, exist_ok=True)
    for option, text in configs.items():
        (sweep_dir / CONFIG_DIR / "strategy").mkdir(parents=True, exist_ok=True)
        (sweep_dir / CONFIG_DIR / "strategy" / f"{option}.yaml").write_text(text)
    if not args.dir:
        latest = sweep_dir.parent / "latest"
        if latest.is_symlink() or not latest.exists():
            latest.unlink(missing_ok=True)
            latest.symlink_to(sweep_dir.name)
    counts = [count_runs(j) for j in jobs]
    total = None if None in counts else sum(c for c in counts if c is not None)
    try:
        previous = read_sweep_json(sweep_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    attempts = [*previous.get("attempts", []),
                *([{k: previous.get(k) for k in ("date", "command", "total_seconds", "progress")}]
                  if previous else [])]
    meta = {"name": name, "sweep_dir": str(sweep_dir), "preset": preset.get("preset"),
            "description": preset.get("description"), "target": preset.get("target"),
            "command": shlex.join(["python", "-m", "cl_compress.launch.sweep", *(argv or sys.argv[1:])]),
            "date": stamp.isoformat(timespec="seconds"), "machine": machine(),
            "benchmarks": benchmarks, "strategies": strategies, "seeds": seeds, "notes": notes,
            "budget": budget, "budget_exceptions": preset.get("budget_exceptions") or {},
            "launcher": launcher, "parallel": parallel,
            "threads": os.environ.get("OMP_NUM_THREADS", threads),
            "tuning": redact_tuning(preset.get("tuning")) or {},
            "runs_expected": total, "attempts": attempts,
            "jobs": [{"args": j, "runs": n, "rc": None, "seconds": None} for j, n in zip(jobs, counts)]}
    t_all = time.perf_counter()
    try:
        progress = run_jobs(cmds, meta, sweep_dir, launcher, threads, total, args.poll)
    except KeyboardInterrupt:
        meta["total_seconds"] = round(time.perf_counter() - t_all, 1)
        meta["interrupted"] = True
        write_json(sweep_dir / "sweep.json", meta)
        return 130
    meta["total_seconds"] = round(time.perf_counter() - t_all, 1)
    final = progress.scan()
    meta["failed_runs"] = final["failed_runs"]
    meta["stale_runs"] = final["stale_runs"]
    stale = final["stale"]
    missing = final["total"] - final["done"] - final["failed"] - stale
    write_json(sweep_dir / "sweep.json", meta)
    if stale:  # the old runs there are another config's: no report that mixes them in
        report = f"none ({stale} run folder(s) hold another config's run)"
    else:
        try:
            report = str(write_report(sweep_dir))
        except ValueError as e:  # no run finished
            report = f"none ({e})"
    if not report.startswith("none"):
        report += wandb_summary(sweep_dir)
    out = args.out or preset.get("out")
    if out and not report.startswith("none"):
        copy_report(sweep_dir, Path(out))
    failed = [j for j in meta["jobs"] if j["rc"] != 0]
    print(f"\nsweep: {sweep_dir} ({meta['total_seconds']:.0f} s): {final['done']}/{final['total']} "
          f"runs done ({final['kept']} kept from before), {final['failed']} failed, "
          + (f"{stale} refused (stale), " if stale else "")
          + f"{missing} missing; {len(failed)} multirun(s) exited non-zero\nreport: {report}"
          + (f"\ncopied to: {out}" if out else ""))
    for f in final["failed_runs"]:
        print(f"failed: {f['run']}: {f['error']}", file=sys.stderr)
    for f in final["stale_runs"]:
        print(f"stale: {f['run']} holds a run of another config (not this sweep's); its results "
              f"are not counted", file=sys.stderr)
    if stale:
        print(f"error: {stale} run folder(s) of {sweep_dir} hold runs made with other settings (an "
              f"edited preset or new defaults): rerun with overwrite=true to replace them, or give "
              f"a new --dir", file=sys.stderr)
    if missing:
        print("missing runs: run the same command again (same --dir) to finish them", file=sys.stderr)
    unequal = unequal_budgets(sweep_dir)
    for bench, text in unequal.items():
        print(f"error: {bench}: {text}", file=sys.stderr)
    return 1 if failed or final["failed"] or missing or stale or unequal else 0


def unequal_budgets(sweep_dir: Path) -> dict[str, str]:
    """Benchmarks of a finished sweep whose runs did unequal training work (optimiser steps
    per task) that the preset did not name in ``budget_exceptions`` (from summary.json)."""
    path = sweep_dir / "summary.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text()).get("benchmarks", {})
    return {b: v["budget"]["text"] for b, v in data.items()
            if v.get("budget", {}).get("verdict") == "unequal"}



def wandb_summary(sweep_dir: Path) -> str:
    """The sweep's W&B dashboard definition (``dashboard.json``) and, when its runs logged to
    W&B, its report.md and figures as an artifact of a summary run in the group
    (:mod:`cl_compress.tracking.dashboard`); never fails the sweep."""
    from cl_compress.tracking import dashboard

    try:
        dashboard.main([str(sweep_dir)])
        if any(sweep_dir.rglob("wandb_run_id")):
            meta = json.loads((sweep_dir / "sweep.json").read_text())
            where = dashboard.log_report(sweep_dir, meta.get("name") or sweep_dir.name)
            return f"\nreport on W&B: {'wandb sync ' + str(where) if where else 'uploaded'}"
    except Exception as e:  # noqa: BLE001  (the sweep's results matter more)
        print(f"warning: W&B dashboard/report not written: {type(e).__name__}: {e}", file=sys.stderr)
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
