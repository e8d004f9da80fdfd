"""Evaluate a saved Ada-QPacknet artifact from scratch, in a fresh process:

    python -m cl_compress.reload <model_artifact.pt> [hydra overrides of the run]

Rebuilds the model from the run's config with a different initialisation, loads every
task's weights from the artifact alone and prints the final accuracy row as JSON.
"""

from __future__ import annotations

import json
import sys

import torch


def accuracy_row(artifact: str, overrides: list[str], init_seed: int = 12345) -> list[float]:
    from .benchmarks import BenchmarkSpec, build_stream
    from .models import ContinualModel, build_backbone
    from .runner import evaluate
    from .strategies.ada_qpacknet import load_artifact
    from .testing import compose_config

    cfg = compose_config(overrides)
    stream = build_stream(BenchmarkSpec(**cfg["benchmark"]))
    kw = dict(cfg["model"])
    name = kw.pop("name")
    torch.manual_seed(init_seed)  # a different init: everything must come from the artifact
    body, feat = build_backbone(name, stream.input_shape, **kw)
    model = ContinualModel(body, feat, stream.head_sizes, multi_head=True)
    art = torch.load(artifact, map_location="cpu", weights_only=True)
    row = []
    for j, e in enumerate(stream.experiences):
        load_artifact(model, art, j)
        row.append(evaluate(model, e.test_x, e.test_y, j, cfg["train"]["eval_batch_size"]))
    return row


if __name__ == "__main__":
    print(json.dumps(accuracy_row(sys.argv[1], sys.argv[2:])))
