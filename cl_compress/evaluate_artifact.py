"""Evaluate a run's saved model artifact from scratch, for any strategy:

    python -m cl_compress.evaluate_artifact [--allow-import] RUN_DIR|ARTIFACT [...] [overrides]

For each run directory (or its ``model_artifact.pt``): reads the run's own config from
``results.json``, checks that ``model_artifact.pt`` is the file the run wrote (sha256),
rebuilds the stream and the model with the one experiment builder (another initialisation:
everything must come from the artifact), builds the strategy from the run's settings, calls
``strategy.setup`` and ``strategy.load_artifact`` (the inverse of ``export_artifact``),
evaluates every task under ``strategy.task_context`` and compares the row with the final row
of the run's accuracy matrix. Prints one JSON line per run (``acc_row``, ``expected``,
``reproduced``); exit status 0 when every row is reproduced (or there is no recorded row to
compare), 1 when one differs, 2 on an error (``error: ...``).

Hydra overrides (``key=value``) rebuild a run that has no ``results.json`` (a warning says the
stream cannot be checked); overrides of the stream, model or strategy that differ from a
run's own config are refused (they would evaluate another stream).

The strategy name comes from ``results.json`` (a data file, possibly from elsewhere): it is
resolved through the registry and the installed entry points only. A ``module:Class`` name
is imported only with ``--allow-import`` (it runs that module's code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cl_compress.compose import compose_config
from cl_compress.errors import CheckpointError, ConfigError, UserError

INIT_SEED = 12345  # not the run's seed: the artifact alone must decide every weight

CHECKED = ("benchmark", "model", "strategy", "seed")  # what decides the stream and the model


def _override_keys(overrides: list[str]) -> list[str]:
    keys = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if "=" in o and key.split(".")[0] in CHECKED:
            keys.append(key)
    return keys


def _get(c: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(c, dict) or part not in c:
            return "<absent>"
        c = c[part]
    return c


def _sha256(path: Path) -> str:
    from cl_compress.rundir.checkpoint import file_sha256

    return file_sha256(path)


def run_config(path: str | Path, overrides: list[str]) -> tuple[Path, dict[str, Any]]:
    """The artifact's path and the config to rebuild its stream and model with."""
    p = Path(path)
    run_dir, artifact = (p, p / "model_artifact.pt") if p.is_dir() else (p.parent, p)
    if not artifact.is_file():
        raise CheckpointError(f"no model artifact at {artifact}")
    composed = compose_config(overrides)
    results = run_dir / "results.json"
    if not results.is_file():
        print(f"warning: no results.json in {run_dir}: the stream is rebuilt from the command "
              f"line alone and cannot be checked against the run", file=sys.stderr)
        return artifact, composed
    try:
        cfg = json.loads(results.read_text())["config"]
        assert isinstance(cfg, dict) and cfg
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{results} is unreadable or has no run config ({type(e).__name__})") from e
    want = json.loads(results.read_text()).get("artifact_sha256")
    if want and want != _sha256(artifact):
        raise CheckpointError(f"{artifact} does not match the run's results.json (sha256 differs): "
                              f"it was modified or replaced after the run")
    diffs = [f"{k}={_get(composed, k)!r} (the run used {_get(cfg, k)!r})"
             for k in _override_keys(overrides) if _get(composed, k) != _get(cfg, k)]
    if diffs:
        raise ConfigError(f"these overrides differ from the run in {run_dir}: {'; '.join(diffs)}; "
                          f"evaluate_artifact evaluates the run's own stream: drop them")
    return artifact, cfg


def _strategy_class(name: Any, allow_import: bool):
    from cl_compress.errors import ConfigError
    from cl_compress.strategies.registry import get_strategy, resolve_registered

    try:
        return resolve_registered(name)
    except ConfigError:
        if allow_import and isinstance(name, str) and ":" in name:
            return get_strategy(name)
        raise ConfigError(f"the run's strategy {name!r} is not registered; a name read from "
                          f"results.json is imported as a path only with --allow-import "
                          f"(it runs that module's code)") from None


def evaluate_run(run_dir: str | Path, overrides: list[str] | None = None,
                 init_seed: int = INIT_SEED, allow_import: bool = False) -> dict[str, Any]:
    """The final accuracy row rebuilt from ``run_dir``'s artifact, with the run's own row."""
    from cl_compress.engine.loop import evaluate
    from cl_compress.experiment import build_experiment, plan_experiment
    from cl_compress.rundir.io import load_torch
    from cl_compress.strategies.base import StreamInfo

    path, cfg = run_config(run_dir, list(overrides or []))
    strategy_cls = _strategy_class((cfg.get("strategy") or {}).get("name"), allow_import)
    results = json.loads((path.parent / "results.json").read_text()) \
        if (path.parent / "results.json").is_file() else {}
    # a class-IL run with task inference trained task-IL heads (with "not mine" / rotation
    # outputs): the builder rebuilds that model and its task-IL row is reproduced
    exp = build_experiment(plan_experiment(cfg, strategy_cls), init_seed=init_seed)
    stream, model, strategy = exp.stream, exp.model, exp.strategy
    class_il = exp.plan.task_inference is not None
    strategy.setup(model, StreamInfo(stream.n_tasks, stream.scenario, stream.input_shape,
                                     stream.head_sizes, stream.name))
    art = load_torch(path)  # weights_only: a tampered file is refused in one line
    try:
        strategy.load_artifact(art)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        if isinstance(err, UserError):
            raise
        first = (str(err).splitlines() or [""])[0]
        raise CheckpointError(f"{path} does not fit the run's model and strategy: "
                              f"{type(err).__name__}: {first}") from err
    model.eval()
    row = []
    for j, e in enumerate(stream.experiences):
        with strategy.task_context(j):
            row.append(evaluate(model, e.test_x, e.test_y, j, cfg["train"]["eval_batch_size"]))
    matrix = (results.get("task_il") or {}).get("acc_matrix") if class_il else results.get("acc_matrix")
    expected = (matrix or [None])[-1]
    return {"run_dir": str(path.parent), "strategy": strategy.name,
            "row": "task-IL (task id given)" if class_il else results.get("scenario"),
            "format": art.get("format") if isinstance(art, dict) else None,
            "acc_row": row, "expected": expected,
            "reproduced": None if expected is None else expected == row}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    allow_import = "--allow-import" in argv
    argv = [a for a in argv if a != "--allow-import"]
    runs = [a for a in argv if "=" not in a]
    overrides = [a for a in argv if "=" in a]
    if not runs or runs[0] in ("-h", "--help"):
        print("usage: python -m cl_compress.evaluate_artifact [--allow-import] "
              "RUN_DIR|ARTIFACT [...] [overrides]", file=sys.stderr)
        return 2
    ok = True
    for run_dir in runs:
        try:
            out = evaluate_run(run_dir, overrides, allow_import=allow_import)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(out))
        ok &= out["reproduced"] is not False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
