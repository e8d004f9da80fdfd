"""Every strategy through the real CIFAR-100 reader, on a format-exact synthetic stand-in:
the first command a researcher types (``make exp STRATEGY=<s> BENCHMARK=split_cifar100``),
proven to run end to end on this CPU at a tiny budget, and the missing-files error.

    python -m experiments.standin_smoke [--model cnn] [--steps 5] [--tasks 10] [--per-class 20]
    python -m experiments.standin_smoke --runs DIR   # summarise finished runs instead

Writes ``experiments/results/cifar100-standin-smoke-synthetic-<date>.md``: per strategy the
optimiser steps per task, the final average accuracy (on SYNTHETIC images: not a CIFAR
figure; 5 steps per task only shows the path runs) and the wall time. Nothing here is
compared across rows beyond "it ran".
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from experiments.harness import header, parser, run_cli, setup_of, today, write_results

STRATEGIES = ("naive", "packnet", "ada_qpacknet", "lrpet", "cacl", "individual")


def main(argv: list[str] | None = None) -> int:
    p = parser("experiments.standin_smoke", __doc__, "cifar100-standin-smoke-synthetic-<date>.md")
    p.add_argument("--model", default="cnn")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--runs", default=None, help="summarise the results.json files under DIR")
    a = p.parse_args(argv)
    rows = []
    if a.runs:
        for f in sorted(Path(a.runs).rglob("results.json")):
            r = json.loads(f.read_text())
            rows.append((r, sum(r["timing"].get("task_seconds", []))))
    else:
        from cl_compress.benchmarks.standin import write_cifar

        tmp = Path(tempfile.mkdtemp(prefix="clc-standin-"))
        write_cifar("cifar100", tmp / "data", a.per_class)
        for s in STRATEGIES:
            res, _ = run_cli([f"strategy={s}", "benchmark=split_cifar100",
                                 f"benchmark.data_root={tmp / 'data'}", f"model={a.model}",
                                 f"train.steps_per_task={a.steps}", f"benchmark.n_tasks={a.tasks}"],
                                tmp / "runs" / s)
            rows.append((res, sum(res["timing"].get("task_seconds", []))))
            print(s, "done", flush=True)
    lines = ["| strategy | stream source | model | tasks | optimiser steps per task | final avg accuracy "
             "(synthetic) | task seconds (sum) |", "|---|---|---|---|---|---|---|"]
    for r, wall in rows:
        steps = sorted({int(t["train_steps"]) for t in r["budget"]["per_task"]})
        acc = sum(r["acc_matrix"][-1]) / len(r["acc_matrix"][-1])
        lines.append(f"| {r['strategy']} | {r['stream_source']} | {setup_of(r)} | {r['n_tasks']} | "
                     f"{'/'.join(map(str, steps))} | {acc:.4f} | {wall:.0f} |")
    text = header("split_cifar100 on a SYNTHETIC stand-in: every strategy runs (smoke, not a result)",
                  "experiments.standin_smoke", argv,
                  "data: `python -m cl_compress.benchmarks.standin cifar100 DIR --per-class "
                  f"{a.per_class}` (synthetic images in the exact CIFAR-100 file format)",
                  "each run: `python -m cl_compress.train strategy=<s> benchmark=split_cifar100 "
                  f"benchmark.data_root=DIR model={a.model} train.steps_per_task={a.steps} "
                  f"benchmark.n_tasks={a.tasks} logger=none`",
                  "accuracies are on synthetic images after a few steps: they show the path runs, "
                  "nothing about the strategies") + "\n".join(lines)
    write_results(text, a.out, f"cifar100-standin-smoke-synthetic-{today()}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
