"""Evaluate a saved Ada-QPacknet artifact from scratch, in a fresh process:

    python -m cl_compress.reload <run_dir | model_artifact.pt> [hydra overrides]

Rebuilds the model from the run's own config (``results.json`` in the run directory) with
a different initialisation, loads every task's weights from the artifact alone and prints
the final accuracy row as JSON. Overrides of the stream, model or strategy that differ
from the run's config are refused (they would evaluate another stream); without a
``results.json`` the config comes from the overrides alone, unchecked. Errors are one
line (``error: ...``, status 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from cl_compress.errors import CheckpointError, ConfigError, UserError
from cl_compress.settings.compose import compose_config

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
                          f"reload evaluates the run's own stream: drop them")
    return artifact, cfg


def accuracy_row(artifact: str, overrides: list[str], init_seed: int = 12345) -> list[float]:
    from cl_compress.benchmarks import BenchmarkSpec, build_stream
    from cl_compress.engine.loop import evaluate
    from cl_compress.models import ContinualModel, build_backbone
    from cl_compress.rundir.io import load_torch
    from cl_compress.strategies.ada_qpacknet import load_artifact

    path, cfg = run_config(artifact, overrides)
    art = load_torch(path)  # weights_only: a tampered file is refused in one line
    if not isinstance(art, dict) or art.get("format") != "ada-qpacknet-v1":
        fmt = art.get("format") if isinstance(art, dict) else type(art).__name__
        raise CheckpointError(f"{path} is not an ada-qpacknet artifact (format {fmt!r})")
    stream = build_stream(BenchmarkSpec(**cfg["benchmark"]))
    if len(art.get("heads", [])) != stream.n_tasks:
        raise CheckpointError(f"{path} holds {len(art.get('heads', []))} task heads, the stream "
                              f"has {stream.n_tasks} tasks")
    kw = dict(cfg["model"])
    name = kw.pop("name")
    torch.manual_seed(init_seed)  # a different init: everything must come from the artifact
    body, feat = build_backbone(name, stream.input_shape, **kw)
    model = ContinualModel(body, feat, stream.head_sizes, multi_head=True)
    row = []
    for j, e in enumerate(stream.experiences):
        try:
            load_artifact(model, art, j)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            first = (str(err).splitlines() or [""])[0]
            raise CheckpointError(f"{path} does not fit the run's model at task {j}: "
                                  f"{type(err).__name__}: {first}") from err
        row.append(evaluate(model, e.test_x, e.test_y, j, cfg["train"]["eval_batch_size"]))
    return row


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m cl_compress.reload <run_dir | model_artifact.pt> [overrides]",
              file=sys.stderr)
        return 2
    try:
        print(json.dumps(accuracy_row(argv[0], argv[1:])))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
