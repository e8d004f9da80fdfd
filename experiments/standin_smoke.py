"""Every strategy through the real CIFAR-100 reader, on a format-exact synthetic stand-in:
the first command a researcher types (``make exp STRATEGY=<s> BENCHMARK=split_cifar100
ARGS="model=resnet18 benchmark.data_root=<folder>"``, run here literally through ``make``),
proven to run end to end on this CPU at a tiny budget, and the missing-files error (the same
command with the folder missing).

    python -m experiments.standin_smoke [--model cnn] [--steps 5] [--tasks 10] [--per-class 20]
    python -m experiments.standin_smoke --runs DIR   # summarise finished runs instead

Writes ``experiments/results/cifar100-standin-smoke[-<model>]-synthetic-<date>.md`` (the model
in the name unless ``cnn``): per strategy the
optimiser steps per task, the final average accuracy (on SYNTHETIC images: not a CIFAR
figure; 5 steps per task only shows the path runs) and the wall time. Nothing here is
compared across rows beyond "it ran".
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from experiments.harness import header, parser, setup_of, today, write_results

REPO = Path(__file__).resolve().parents[1]


def make_exp(strategy: str, args: list[str]) -> subprocess.CompletedProcess:
    """``make exp STRATEGY=<strategy> BENCHMARK=split_cifar100 ARGS="<args>"`` in the repository."""
    return subprocess.run(["make", "-s", "exp", f"STRATEGY={strategy}", "BENCHMARK=split_cifar100",
                           f"ARGS={shlex.join(args)}"], cwd=REPO, capture_output=True, text=True)

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
            run = tmp / "runs" / s
            p = make_exp(s, [f"model={a.model}", f"benchmark.data_root={tmp / 'data'}",
                             f"train.steps_per_task={a.steps}", "train.epochs=null",
                             f"benchmark.n_tasks={a.tasks}", "logger=none",
                             "trainer.progress_bar=false", f"hydra.run.dir={run}"])
            if p.returncode != 0:
                raise SystemExit(f"make exp STRATEGY={s} failed ({p.returncode}):\n{p.stderr[-2000:]}")
            res = json.loads((run / "results.json").read_text())
            rows.append((res, sum(res["timing"].get("task_seconds", []))))
            print(s, "done", flush=True)
        gone = tmp / "missing"
        p = make_exp("naive", [f"model={a.model}", f"benchmark.data_root={gone}", "logger=none",
                               f"hydra.run.dir={tmp / 'runs' / 'missing'}"])
        if p.returncode == 0:
            raise SystemExit(f"make exp with benchmark.data_root={gone} (missing) did not fail")
        err = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("make")]
        missing = (f"the same command with the folder missing (`benchmark.data_root=DIR/missing`): "
                   f"exit {p.returncode}, {len(err)} line(s) on stderr: "
                   f"`{(err[0] if err else '').replace(str(tmp), 'DIR')}`")
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
                  "each run: `make exp STRATEGY=<s> BENCHMARK=split_cifar100 ARGS=\"model="
                  f"{a.model} benchmark.data_root=DIR train.steps_per_task={a.steps} "
                  f"train.epochs=null benchmark.n_tasks={a.tasks} logger=none\"`",
                  *([missing] if not a.runs else []),
                  "accuracies are on synthetic images after a few steps: they show the path runs, "
                  "nothing about the strategies") + "\n".join(lines)
    tag = "" if a.model == "cnn" else f"-{a.model}"
    write_results(text, a.out, f"cifar100-standin-smoke{tag}-synthetic-{today()}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
