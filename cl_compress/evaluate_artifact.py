"""Evaluate a run's saved model artifact from scratch, for any strategy:

    python -m cl_compress.evaluate_artifact [--allow-import] RUN_DIR [RUN_DIR ...]

For each run directory: reads the run's own config from ``results.json``, checks that
``model_artifact.pt`` is the file the run wrote (sha256), rebuilds the stream and the model
(with another initialisation: everything must come from the artifact), builds the strategy
from the run's settings, calls ``strategy.setup`` and ``strategy.load_artifact`` (the inverse
of ``export_artifact``), evaluates every task under ``strategy.task_context`` and compares the
row with the final row of the run's accuracy matrix. Prints one JSON line per run
(``acc_row``, ``expected``, ``reproduced``); exit status 0 when every row is reproduced, 1
when one differs, 2 on an error (``error: ...``).

The strategy name comes from ``results.json`` (a data file, possibly from elsewhere): it is
resolved through the registry and the installed entry points only. A ``module:Class`` name
is imported only with ``--allow-import`` (it runs that module's code).

``cl_compress.reload`` (Ada-QPacknet's own loader, through ``load_artifact`` of its module)
keeps working; this command is the generic one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cl_compress.errors import CheckpointError, UserError

INIT_SEED = 12345  # not the run's seed: the artifact alone must decide every weight


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


def evaluate_run(run_dir: str | Path, init_seed: int = INIT_SEED,
                 allow_import: bool = False) -> dict[str, Any]:
    """The final accuracy row rebuilt from ``run_dir``'s artifact, with the run's own row."""
    import torch

    from cl_compress.benchmarks import BenchmarkSpec, build_stream
    from cl_compress.engine.loop import evaluate
    from cl_compress.models import ContinualModel, build_backbone
    from cl_compress.reload import run_config
    from cl_compress.rundir.io import load_torch
    from cl_compress.strategies.base import StreamInfo, TrainSettings

    path, cfg = run_config(run_dir, [])
    strategy_cls = _strategy_class((cfg.get("strategy") or {}).get("name"), allow_import)
    results = json.loads((path.parent / "results.json").read_text()) \
        if (path.parent / "results.json").is_file() else {}
    spec = BenchmarkSpec(**cfg["benchmark"])
    extra = {}
    class_il = "class_il" in results
    if class_il:
        # a class-IL run with task inference trained task-IL heads (with "not mine" / rotation
        # outputs): rebuild that model and reproduce its task-IL row (task id given)
        import dataclasses

        from cl_compress.engine.task_inference import TaskInferenceSettings

        ti = TaskInferenceSettings(**(cfg.get("eval") or {}))
        spec = dataclasses.replace(spec, scenario="task")
        extra = {"extra_outputs": ti.extra_outputs, "rotations": ti.rotations}
    stream = build_stream(spec)
    kw = dict(cfg["model"])
    name = kw.pop("name")
    torch.manual_seed(init_seed)
    body, feat = build_backbone(name, stream.input_shape, **kw)
    model = ContinualModel(body, feat, stream.head_sizes, multi_head=stream.scenario == "task",
                           **extra)
    params = {k: v for k, v in cfg["strategy"].items() if k not in ("name", "variant")}
    strategy = strategy_cls.from_config(
        params, TrainSettings(**cfg["train"]), name=cfg["strategy"]["name"])
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
            "acc_row": row, "expected": expected, "reproduced": expected == row}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    allow_import = "--allow-import" in argv
    argv = [a for a in argv if a != "--allow-import"]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m cl_compress.evaluate_artifact [--allow-import] RUN_DIR "
              "[RUN_DIR ...]", file=sys.stderr)
        return 2
    ok = True
    for run_dir in argv:
        try:
            out = evaluate_run(run_dir, allow_import=allow_import)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(out))
        ok &= bool(out["reproduced"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
