"""Re-check of the task-inference defaults on held-out training images (no test image):
PackNet on class-IL split Fashion-MNIST with ``benchmark.max_train_per_task=4000
train.steps_per_task=300``; the validation set is 2,000 training images per task taken from
those that the 4,000-image subsample leaves out. Prints validation and test class-IL.

    python -m experiments.class_il_validation [eval overrides ...]
    e.g. python -m experiments.class_il_validation eval.refit_energy=0.997
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile

import torch

from cl_compress.benchmarks import BenchmarkSpec, build_stream
from cl_compress.compose import compose_config
from cl_compress.engine.task_inference import class_il_row
from cl_compress.train import build_and_run

CAP = 4000


def main(extra: list[str]) -> int:
    ov = ["benchmark=split_fmnist", "logger=none", "trainer.progress_bar=false", "strategy=packnet",
          "benchmark.scenario=class", f"benchmark.max_train_per_task={CAP}",
          "train.steps_per_task=300", *extra]
    cfg = compose_config(ov)
    spec = dataclasses.replace(BenchmarkSpec(**cfg["benchmark"]), scenario="task",
                               max_train_per_task=None)
    val = []
    for e in build_stream(spec).experiences:
        n = e.train_x.shape[0]  # the subsample of benchmarks._limit, then its complement
        g = torch.Generator().manual_seed(spec.seed * 31 + e.task_id)
        unused = torch.ones(n, dtype=torch.bool)
        unused[torch.randperm(n, generator=g)[:CAP]] = False
        idx = unused.nonzero().flatten()[:2000]
        val.append(dataclasses.replace(e, test_x=e.train_x[idx], test_y=e.train_y[idx]))
    out: dict[str, float] = {}
    T = len(val)

    def score(t, model, strategy):
        if t == T - 1:
            sc = "not_mine" if model.extra_outputs else "max_softmax"
            acc, _ = class_il_row(model, strategy, val, t, sc, 1024)
            out["val"] = sum(acc) / len(acc)

    r = build_and_run(cfg, tempfile.mkdtemp(prefix="classil-val-"), score)
    print(json.dumps({"overrides": extra, "val_class_il": round(out["val"], 4),
                      "test_class_il": round(r["avg_acc"], 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
