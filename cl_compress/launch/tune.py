"""Hyper-parameter search of one strategy with Optuna, scored on a validation split.

    python -m cl_compress.launch.tune --strategy packnet [--benchmark split_digits] [--trials 20]
        [--preset BASE] [--storage URL] [--study NAME] [--objectives acc | acc,bits]
        [--params "prune_ratio retrain_lr_scale"] [--seeds "0"] [--out PRESET.yaml] [--dir DIR]
        [hydra overrides for every trial, e.g. train.steps_per_task=200]

* Search space: generated from the strategy's ``hp()`` ranges (:func:`search_space`), narrowed
  by the strategy's ``tune_space`` and by ``--params``. A study records its space; continuing
  it with another space (a changed range, ``tune_space`` or ``--params``) is refused with the
  difference and a new study name to use (:func:`space_mismatch`).
* Never the test split: every trial runs with ``benchmark.eval_split=val``, i.e. it trains on
  ``1 - val_fraction`` of each task's training split and is scored on the held-out rest; the
  test split is not even loaded into the stream (see :func:`cl_compress.benchmarks.build_stream`).
* Storage: an SQLite file (``runs/tune/<study>.db``) by default, or any database URL Optuna
  accepts (``--storage postgresql://user:pw@host/db``): processes on one or several machines
  that name the same study and storage share it, each taking the next trial number until the
  study holds ``--trials`` completed trials (a failed trial does not count and is replaced,
  up to ``max(3, --trials)`` failures per process).
* Output: ``<dir>/tune.json`` (every trial, the best one, the Pareto front) and a preset
  (default ``presets/tuned_<strategy>_<benchmark>.yaml`` in the working directory) with the best
  hyper-parameters as ``strategy_overrides`` and the number of trials in ``tuning``, which
  ``make compare PRESET=...`` runs on the test split. A preset that exists already is extended
  (so tuning several strategies into one file gives one comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cl_compress.compose import compose_config
from cl_compress.errors import ConfigError, UserError
from cl_compress.rundir.io import write_json
from cl_compress.rundir.redact import redact, redact_tuning  # noqa: F401  (tune.redact: public)

# overrides that only the tuning runs use: never copied into the written preset
TUNE_ONLY = ("benchmark.eval_split", "benchmark.val_fraction", "seed", "trainer.progress_bar",
             "hydra", "skip_if_done", "keep_going", "resume")
OBJECTIVES = {"acc": ("avg_acc", "maximize"), "bits": ("compression.stored_bits", "minimize")}


@dataclass
class Param:
    """One searched hyper-parameter: ``categorical`` (``choices``), ``float`` or ``int``
    (``low``..``high`` inclusive, ``log`` scale or not)."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices or []))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def text(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {self.choices}"
        return f"{self.name} {self.kind} [{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


def numeric_param(name: str, default: Any, m: dict[str, Any]) -> Param | None:
    """The search range of a numeric ``hp`` field from its valid range ``m``.

    An open end moves inward by 1 % of the span (floats) or by 1 (integers). A missing end
    gets a default span around the default value: ``high = 10 x default`` (floats) or
    ``max(low + 1, 4 x default)`` (integers), ``low = default / 10`` (floats); a field
    without a usable default span is not searched (None). Log scale when ``low > 0`` and the
    range spans more than two decades.

    >>> numeric_param("p", 0.5, {"low": 0.0, "high": 1.0, "low_open": True, "high_open": True})
    Param(name='p', kind='float', low=0.01, high=0.99, log=False, choices=None)
    >>> numeric_param("e", 1, {"low": 0, "high": None, "low_open": False, "high_open": False})
    Param(name='e', kind='int', low=0, high=4, log=False, choices=None)
    >>> numeric_param("w", 0.1, {"low": 0.0, "high": None, "low_open": True, "high_open": False}).high
    1.0
    >>> numeric_param("s", 3e-5, {"low": 1e-7, "high": 0.1, "low_open": False, "high_open": False}).log
    True
    """
    is_int = isinstance(default, int) and not isinstance(default, bool)
    lo, hi = m.get("low"), m.get("high")
    if hi is None:
        if is_int:
            hi = max((lo or 0) + 1, 4 * default)
        elif isinstance(default, int | float) and default > 0:
            hi = 10 * default
        else:
            return None
    if lo is None:
        if is_int or not (isinstance(default, int | float) and default > 0):
            return None
        lo = default / 10
    span = hi - lo
    if span <= 0:
        return None
    step = 1 if is_int else 0.01 * span
    if m.get("low_open"):
        lo = lo + step
    if m.get("high_open"):
        hi = hi - step
    if is_int:
        lo, hi = int(math.ceil(lo)), int(math.floor(hi))
    else:
        lo, hi = round(lo, 12), round(hi, 12)
    if hi <= lo:
        return None
    log = lo > 0 and hi / lo > 100
    return Param(name, "int" if is_int else "float", lo, hi, log)


def search_space(strategy: str, only: list[str] | None = None) -> list[Param]:
    """The searched hyper-parameters of ``strategy``: every ``hp`` field of its Config
    (choices -> categorical; numeric ranges -> :func:`numeric_param`; list-valued fields are
    not searched), with the strategy's ``tune_space`` entries replacing the generated ones
    (``None``: keep the configured value). ``only`` restricts the search to those names."""
    from cl_compress.strategies import get_strategy

    cls = get_strategy(strategy)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    narrowed = dict(getattr(cls, "tune_space", {}) or {})
    unknown = sorted(set(narrowed) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__}.tune_space names unknown field(s) {unknown}")
    if only:
        bad = sorted(set(only) - set(fields))
        if bad:
            raise ConfigError(f"--params: unknown hyper-parameter(s) {bad} of {strategy!r}; "
                              f"valid: {sorted(fields)}")
    defaults = cls.Config()
    space = []
    for name, f in fields.items():
        if only and name not in only:
            continue
        default = getattr(defaults, name)
        if name in narrowed:
            spec = narrowed[name]
            if spec is None and not only:
                continue
            if spec is not None:
                if "choices" in spec:
                    space.append(Param(name, "categorical", choices=list(spec["choices"])))
                else:
                    is_int = isinstance(default, int) and not isinstance(default, bool)
                    space.append(Param(name, "int" if is_int else "float", spec["low"], spec["high"],
                                       bool(spec.get("log", False))))
                continue
        m = dict(f.metadata or {})
        if not m or isinstance(default, list | dict):
            continue
        if m.get("choices") is not None:
            space.append(Param(name, "categorical", choices=list(m["choices"])))
            continue
        p = numeric_param(name, default, m)
        if p is not None:
            space.append(p)
    return space


def override_value(v: Any) -> str:
    """A value as a Hydra override / YAML scalar.

    >>> [override_value(v) for v in (True, 0.25, 3, "hoyer", None)]
    ['true', '0.25', '3', 'hoyer', 'null']
    """
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    return repr(v) if isinstance(v, float) else str(v)


def _get(res: dict[str, Any], key: str) -> float:
    for part in key.split("."):
        res = res[part]
    return float(res)  # type: ignore[arg-type]


def open_storage(url: str) -> Any:
    """An Optuna storage; SQLite waits up to a minute for a lock (several processes on one
    file), and creating the schema is retried when two processes create it at once."""
    import optuna

    kw = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    check_sqlite(url)
    for attempt in range(5):
        try:
            # heartbeats: a killed worker's trial turns FAIL after the grace period instead of
            # staying RUNNING (and counted) forever
            return optuna.storages.RDBStorage(url, engine_kwargs=kw, heartbeat_interval=30,
                                              grace_period=120)
        except Exception as e:
            if attempt == 4 or _corrupt(e):
                raise StudyError(f"cannot open the Optuna storage {redact(url)}: "
                                 f"{_first_line(e)}") from e
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


class StudyError(UserError):
    """The study's storage cannot be opened or read (corrupt, truncated, unreachable)."""


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e)
    return f"{type(e).__name__}: {(text.splitlines() or [''])[0][:300]}"


def _corrupt(e: BaseException) -> bool:
    text = str(e).lower()
    return any(w in text for w in ("not a database", "malformed", "disk image", "file is encrypted"))


def check_sqlite(url: str) -> None:
    """A SQLite study file that is not a SQLite database (or a truncated one): one line, at once."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        head = f.read(100)
    if not head.startswith(b"SQLite format 3\0") or len(head) < 100:
        raise StudyError(f"{path} is not a SQLite database (truncated or another file); move it "
                         f"away, or give another --study or --storage")
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    if page and pages and path.stat().st_size < page * pages:
        raise StudyError(f"{path} is truncated ({path.stat().st_size} bytes, its header says "
                         f"{page * pages}); move it away, or give another --study or --storage")


def main(argv: list[str] | None = None) -> int:
    from cl_compress.launch.sweep import LOCAL_PRESET_DIR, check_budget, load_preset, merge_overrides
    p = argparse.ArgumentParser(prog="python -m cl_compress.launch.tune", description=__doc__.split("\n")[0])
    p.add_argument("--strategy", required=True, help="the strategy to tune")
    p.add_argument("--benchmark", default="split_fmnist", help="benchmark (default split_fmnist)")
    p.add_argument("--trials", type=int, default=20, help="trials of the study in all (default 20)")
    p.add_argument("--preset", help="comparison preset whose settings the trials use (budget, model)")
    p.add_argument("--storage", help="Optuna database URL (default sqlite:///runs/tune/<study>.db)")
    p.add_argument("--study", help="study name (default <strategy>-<benchmark>)")
    p.add_argument("--objectives", default="acc",
                   help="acc (validation accuracy) or acc,bits (also minimise stored bits)")
    p.add_argument("--params", help="search only these hyper-parameters (space-separated)")
    p.add_argument("--seeds", default="0", help="seeds per trial, scores averaged (default 0)")
    p.add_argument("--val-fraction", type=float, help="held-out share of each task's training data")
    p.add_argument("--sampler-seed", type=int, help="seed of the TPE sampler (default random)")
    p.add_argument("--dir", help="trial run directories (default runs/tune/<study>)")
    p.add_argument("--out", help="preset to write (default presets/tuned_<strategy>_"
                                 "<benchmark>.yaml; an existing one is extended)")
    args, extra = p.parse_known_args(argv)
    try:
        import optuna

        from cl_compress.compose import register_strategy_configs
        from cl_compress.strategies import get_strategy

        get_strategy(args.strategy)  # a one-line ConfigError: unknown name, or the plugin's import error
        register_strategy_configs()  # strategy=<plugin> composes like a built-in
        objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
        if not objectives or any(o not in OBJECTIVES for o in objectives) or objectives[0] != "acc":
            raise ConfigError(f"--objectives {args.objectives!r}: 'acc' or 'acc,bits'")
        if args.trials < 1:
            raise ConfigError("--trials must be >= 1")
        space = search_space(args.strategy, (args.params or "").replace(",", " ").split() or None)
        if not space:
            raise ConfigError(f"strategy {args.strategy!r} has no hyper-parameter to search")
        base = load_preset(args.preset)
        bench = args.benchmark
        seeds = [int(s) for s in args.seeds.replace(",", " ").split()]
        study_name = args.study or f"{args.strategy}-{bench}"
        root = Path("runs") / "tune"
        run_root = Path(args.dir or root / study_name).resolve()
        storage_url = args.storage or f"sqlite:///{(root / f'{study_name}.db').resolve()}"
        if storage_url.startswith("sqlite:///"):
            Path(storage_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        fixed = merge_overrides(base.get("overrides") or [],
                                (base.get("benchmark_overrides") or {}).get(bench, []), extra)
        check_budget(base, [bench], extra)
        val = [f"benchmark.val_fraction={args.val_fraction}"] if args.val_fraction else []
        trial_overrides = merge_overrides(
            ["logger=none", "trainer.progress_bar=false"], fixed,
            [f"benchmark={bench}", f"strategy={args.strategy}", "benchmark.eval_split=val", *val])
        base_params = {ov.split("=", 1)[0].removeprefix("strategy."): yaml.safe_load(ov.split("=", 1)[1])
                       for ov in (base.get("strategy_overrides") or {}).get(args.strategy, [])}
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from optuna.trial import TrialState

    from cl_compress.strategies.base import validate_config
    from cl_compress.train import build_and_run

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import lightning.pytorch  # noqa: F401  (it sets its own log level on import)

    for noisy in ("lightning.pytorch", "lightning.fabric"):  # device banners, tips
        logging.getLogger(noisy).setLevel(logging.WARNING)
    directions = [OBJECTIVES[o][1] for o in objectives]
    sampler = optuna.samplers.TPESampler(seed=args.sampler_seed)
    study = None
    try:
        storage = open_storage(storage_url)
        for attempt in range(5):  # two processes creating one study at once: the loser loads it
            try:
                study = optuna.create_study(study_name=study_name, storage=storage,
                                            directions=directions, sampler=sampler,
                                            load_if_exists=True)
                break
            except Exception as e:
                if attempt == 4 or _corrupt(e):
                    raise StudyError(f"cannot load study {study_name!r} from {redact(storage_url)}: "
                                     f"{_first_line(e)}") from e
                time.sleep(1 + attempt)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    assert study is not None
    if [d.name.lower() for d in study.directions] != directions:
        print(f"error: study {study_name!r} exists with directions "
              f"{[d.name.lower() for d in study.directions]}, not {directions}", file=sys.stderr)
        return 2
    mismatch = space_mismatch(study, space)
    if mismatch:
        print(f"error: study {study_name!r} in {redact(storage_url)} was searched over another space "
              f"({mismatch}); Optuna cannot mix two spaces in one study. Start a new study "
              f"(--study {study_name}-{space_digest(space)}) or remove the old one", file=sys.stderr)
        return 2
    study.set_user_attr("space", [q.text() for q in space])
    worker = f"{socket.gethostname()}:{os.getpid()}"
    print(f"[tune] study {study_name} ({redact(storage_url)}), {args.trials} trials in all, worker "
          f"{worker}\n[tune] space: " + "; ".join(q.text() for q in space), flush=True)

    def objective(trial: Any) -> Any:
        if counted(trial.study, but=trial.number) >= args.trials:  # the budget is spent (all workers)
            trial.study.stop()
            raise optuna.TrialPruned(f"the study has its {args.trials} trials")
        trial.set_user_attr("worker", worker)
        params = {q.name: q.suggest(trial) for q in space}
        cfg = compose_config(trial_overrides)
        cfg["strategy"] |= base_params | params
        from cl_compress.strategies import get_strategy

        cls = get_strategy(args.strategy)
        scfg = cls.Config(**{k: v for k, v in cfg["strategy"].items() if k not in ("name", "variant")})
        validate_config(scfg)
        scfg.validate()
        scores: list[list[float]] = []
        for seed in seeds:
            cfg["seed"] = seed
            res = build_and_run(cfg, run_root / f"trial-{trial.number:04d}" / f"s{seed}")
            scores.append([_get(res, OBJECTIVES[o][0]) for o in objectives])
        values = [sum(col) / len(col) for col in zip(*scores)]
        trial.set_user_attr("per_seed", scores)
        print(f"[tune] trial {trial.number}: {params} -> "
              + ", ".join(f"{o}={v:.4g}" for o, v in zip(objectives, values)), flush=True)
        return values[0] if len(values) == 1 else tuple(values)

    failed_here: list[int] = []

    def stop_when_done(study: Any, trial: Any) -> None:
        # only completed trials count towards --trials: a failed one is replaced, up to
        # max(3, --trials) failures in this worker (a strategy that always fails stops)

        if trial.state == TrialState.FAIL:
            failed_here.append(trial.number)
        if counted(study) >= args.trials or len(failed_here) >= max(3, args.trials):
            study.stop()

    t0 = time.time()
    study.optimize(objective, callbacks=[stop_when_done], catch=(Exception,))
    summary = summarize(study, args.trials, objectives)
    summary |= {"strategy": args.strategy, "benchmark": bench, "storage": redact(storage_url),
                "eval_split": "val", "seeds": seeds, "space": [q.text() for q in space],
                "overrides": trial_overrides, "worker_seconds": round(time.time() - t0, 1)}
    run_root.mkdir(parents=True, exist_ok=True)
    write_json(run_root / "tune.json", summary)
    best = summary["best"]
    if best is None:
        print(f"error: no trial of study {study_name} finished; see {run_root}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else LOCAL_PRESET_DIR / f"tuned_{args.strategy}_{bench}.yaml"
    write_preset(out, base, args, bench, fixed, best, summary)
    print(f"[tune] {summary['complete']} of {args.trials} trials finished "
          f"({summary['failed']} failed), workers {summary['workers']}\n[tune] best (trial "
          f"{best['number']}): {best['params']} -> {best['values']}")
    if len(objectives) > 1:
        print("[tune] Pareto front (accuracy vs stored bits):")
        for t in summary["pareto_front"]:
            print(f"  trial {t['number']}: {t['params']} -> {t['values']}")
    print(f"[tune] trials: {run_root / 'tune.json'}\n[tune] preset: {out}  (make compare PRESET={out})")
    return 0


def counted(study: Any, but: int | None = None) -> int:
    """Trials that count towards ``--trials``: completed ones, and those running now (in any
    worker; ``but`` leaves out the caller's own), so that parallel workers never overshoot.
    Failed and pruned trials do not count (a failed one is replaced)."""
    from optuna.trial import TrialState

    return sum(t.state == TrialState.COMPLETE or (t.state == TrialState.RUNNING and t.number != but)
               for t in study.get_trials(deepcopy=False))


def distribution(q: Param) -> Any:
    """The Optuna distribution :meth:`Param.suggest` draws from."""
    from optuna import distributions as d

    if q.kind == "categorical":
        return d.CategoricalDistribution(list(q.choices or []))
    if q.kind == "int":
        return d.IntDistribution(int(q.low), int(q.high), log=q.log)  # type: ignore[arg-type]
    return d.FloatDistribution(float(q.low), float(q.high), log=q.log)  # type: ignore[arg-type]


def space_digest(space: list[Param]) -> str:
    """A short name for a search space (a suggested study name suffix)."""
    import hashlib

    return hashlib.sha1("; ".join(q.text() for q in space).encode()).hexdigest()[:6]


def space_mismatch(study: Any, space: list[Param]) -> str:
    """Why ``study`` cannot continue with ``space`` (empty: it can): the space it recorded
    (``space`` user attribute) differs, or, for a study from before that record, a trial drew a
    parameter from another distribution (Optuna's "Cannot set different ..." in every trial)."""
    now = [q.text() for q in space]
    recorded = study.user_attrs.get("space")
    if recorded is not None:
        if list(recorded) != now:
            gone = [x for x in recorded if x not in now]
            new = [x for x in now if x not in recorded]
            return f"then: {'; '.join(gone) or '-'}; now: {'; '.join(new) or '-'}"
        return ""
    want = {q.name: distribution(q) for q in space}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            if name in want and want[name] != dist:
                return f"trial {t.number} drew {name} from {dist}, now {want[name]}"
    return ""


def summarize(study: Any, n_trials: int, objectives: list[str]) -> dict[str, Any]:
    """The study's first ``n_trials`` completed trials (and the failed ones), the best one
    (highest validation accuracy; with two objectives, the most accurate member of the Pareto
    front) and the front."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.PRUNED]
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    done = done[:n_trials]  # the study's budget: its first n_trials completed trials
    if done:
        trials = [t for t in trials if t.number <= done[-1].number or t.state != TrialState.COMPLETE]

    def row(t: Any) -> dict[str, Any]:
        return {"number": t.number, "state": t.state.name, "params": t.params,
                "values": dict(zip(objectives, t.values)) if t.values else None,
                "worker": t.user_attrs.get("worker")}

    front = [t for t in done if not any(_dominates(o, t, len(objectives)) for o in done)]
    best = max(front, key=lambda t: (t.values[0], -t.number)) if front else None
    return {"study": study.study_name, "objectives": objectives, "trials": n_trials,
            "complete": len(done), "failed": sum(t.state == TrialState.FAIL for t in trials),
            "workers": sorted({t.user_attrs.get("worker") for t in trials} - {None}),
            "best": row(best) if best else None,
            "pareto_front": [row(t) for t in sorted(front, key=lambda t: -t.values[0])],
            "all": [row(t) for t in trials]}


def _dominates(a: Any, b: Any, k: int) -> bool:
    """Whether trial ``a`` is at least as good as ``b`` in every objective and better in one
    (objective 0 maximised, objective 1 minimised)."""
    if k == 1:
        return a.values[0] > b.values[0]
    sa, sb = (a.values[0], -a.values[1]), (b.values[0], -b.values[1])
    return all(x >= y for x, y in zip(sa, sb)) and sa != sb


def write_preset(out: Path, base: dict[str, Any], args: Any, bench: str, fixed: list[str],
                 best: dict[str, Any], summary: dict[str, Any]) -> None:
    """Write (or extend) the comparison preset with the best hyper-parameters."""
    from cl_compress.launch.sweep import merge_overrides

    old = yaml.safe_load(out.read_text()) if out.is_file() else {}
    start = old or {k: v for k, v in base.items() if k not in ("preset", "out")}
    overrides = [o for o in fixed if not o.lstrip("+~").startswith(TUNE_ONLY)]
    so = dict(start.get("strategy_overrides") or {})
    so[args.strategy] = merge_overrides(
        (base.get("strategy_overrides") or {}).get(args.strategy, []),
        [f"strategy.{k}={override_value(v)}" for k, v in best["params"].items()])
    tuning = dict(redact_tuning(start.get("tuning")) or {})
    tuning[args.strategy] = {
        "trials": summary["trials"], "complete": summary["complete"], "failed": summary["failed"],
        "study": summary["study"], "storage": redact(summary["storage"]), "benchmark": bench,
        "objective": "+".join(summary["objectives"]), "best_trial": best["number"],
        "validation": best["values"], "eval_split": "val", "seeds": summary["seeds"],
        "date": dt.datetime.now().isoformat(timespec="seconds")}
    preset = {
        "description": start.get("description") or (
            f"{bench}: strategies at tuned hyper-parameters (Optuna on a validation split "
            "held out of the training data), then compared on the test split"),
        "target": start.get("target") or "a comparison where each strategy had the same tuning budget",
        "benchmarks": start.get("benchmarks") or [bench],
        "strategies": start.get("strategies") or "all",
        "seeds": start.get("seeds") or [0, 1, 2],
        "overrides": start.get("overrides") if old else overrides,
        **{k: start[k] for k in ("benchmark_overrides", "variants", "budget_exceptions", "parallel",
                                 "threads", "launcher") if start.get(k)},
        "strategy_overrides": so, "tuning": tuning}
    if old and sorted(start.get("overrides") or []) != sorted(overrides):
        print(f"warning: {out} keeps its overrides {start.get('overrides')}; this study ran with "
              f"{overrides}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = (f"# written by python -m cl_compress.launch.tune ({dt.date.today()}); tuned strategies: "
            f"{', '.join(sorted(tuning))}\n# make compare PRESET={out}\n")
    out.write_text(head + yaml.safe_dump(preset, sort_keys=False))


if __name__ == "__main__":
    raise SystemExit(main())
