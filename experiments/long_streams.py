"""Long streams: how stored size, per-task strategy state, checkpoint size and inference cost
grow over 20- and 50-task streams (synthetic, small), read from results.json ``footprint``
(:mod:`cl_compress.engine.footprint`).

Every strategy trains the ``synthetic`` benchmark (2 classes a task, 8x8 images) with a
small MLP for a few optimiser steps a task: the figures are sizes and costs, not accuracies.
For each run the table gives the footprint after the first task, after a quarter, half and
all of the tasks, and the growth per task over the second half (the steady state).

Usage: python -m experiments.long_streams [--tasks 20,50] [--steps 4] [--strategies a,b]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from experiments import harness

FIELDS = ("stored_params", "stored_bits", "strategy_state_bytes", "checkpoint_bytes",
          "checkpoint_file_bytes", "flops_task")
# what each method says its footprint does as tasks are added
EXPECT = {
    "naive": "one shared model: constant (a head per task)",
    "individual": "one model per task: linear, one full model a task",
    "packnet": "fixed body + per-task mask index and norm state: near constant, masks' bits grow "
               "with log2(tasks)",
    "ada_qpacknet": "fixed body (quantised) + per-task codebooks, masks, norm state: near constant",
    "lrpet": "shared rank-k terms: one rank-k residual a task, linear in k (small)",
    "cacl": "SVD factors: a few components a task (growth rule), sub-linear to linear",
}


def overrides(name: str, tasks: int, steps: int) -> list[str]:
    ov = [f"strategy={name}", "benchmark=synthetic", f"benchmark.n_tasks={tasks}",
          "model=mlp", "model.hidden=[64,64]", "train.epochs=null", f"train.steps_per_task={steps}",
          "train.batch_size=32", "logger=none", "trainer.progress_bar=false"]
    if name == "ada_qpacknet":
        ov += ["strategy.population=1", "strategy.search_epochs=0"]
    return ov


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.long_streams", __doc__, "long-streams-synthetic-<date>.md")
    ap.add_argument("--tasks", default="20,50")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--strategies", default="")
    args = ap.parse_args(argv)
    harness.quiet_lightning()
    from cl_compress.strategies import builtin_names
    from cl_compress.testing import compose_config
    from cl_compress.train import build_and_run

    names = [s for s in args.strategies.split(",") if s] or builtin_names()
    out = [harness.header(
        "Long streams (synthetic): per-task footprint", "experiments.long_streams", argv,
        f"data: synthetic benchmark (Gaussian prototypes, 8x8, 2 classes a task); MLP 64-64; "
        f"{args.steps} optimiser steps a task for every strategy (Ada-QPacknet: population 1, "
        f"no search fine-tuning); sizes, not accuracies",
        "bits: what the strategy stores for all tasks so far (compression_stats); state / ckpt: "
        "tensor payload of strategy.state_dict() / of model + strategy state; ckpt file: "
        "checkpoint.pt on disk; FLOPs: forward of one sample of the newest task",
        "the CPU is shared with other jobs; run under nice -n 10")]
    for T in [int(t) for t in args.tasks.split(",") if t]:
        out += [f"## {T} tasks", "", "| strategy | after task | stored bits | strategy state B | "
                "ckpt tensors B | ckpt file B | FLOPs newest task | wall s |",
                "|---|---|---|---|---|---|---|---|"]
        growth = []
        for name in names:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as d:
                res = build_and_run(compose_config(overrides(name, T, args.steps)), Path(d) / "run")
            wall = time.perf_counter() - t0
            fp = res["footprint"]
            assert len(fp) == T, f"{name}: {len(fp)} footprint entries for {T} tasks"
            for i in sorted({0, T // 4 - 1, T // 2 - 1, T - 1}):
                e = fp[i]
                out.append(f"| {name} | {i + 1} | {e['stored_bits']} | {e['strategy_state_bytes']} | "
                           f"{e['checkpoint_bytes']} | {e.get('checkpoint_file_bytes', '-')} | "
                           f"{e.get('flops_task', '-')} | {wall:.0f} |")
            half = T // 2 - 1
            per = {k: (fp[-1][k] - fp[half][k]) / (T - 1 - half) for k in FIELDS if k in fp[-1]}
            growth.append(f"| {name} | " + " | ".join(f"{per.get(k, 0):.0f}" for k in FIELDS)
                          + f" | {EXPECT.get(name, '')} |")
            print(out[-1], flush=True)
        out += ["", f"Growth per task over tasks {T // 2 + 1}..{T}:", "",
                "| strategy | " + " | ".join(FIELDS) + " | the method says |",
                "|---|" + "---|" * (len(FIELDS) + 1), *growth, ""]
    text = "\n".join(out) + "\n"
    print(text)
    harness.write_results(text, args.out, f"long-streams-synthetic-{harness.today()}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
