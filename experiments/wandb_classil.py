"""A class-IL comparison read back from W&B's own offline records: naive, PackNet and LRPET
on one group; the keys each run logged, whether every shared key holds the same quantity
(checked against each run's results.json), the per-task scalars, and one continuous history
for the LRPET run, interrupted after task 1 and resumed.

    python -m experiments.wandb_classil [--steps 30] [--out FILE]

Synthetic data (benchmark=synthetic, 3 tasks): the point is what W&B holds, not accuracy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from experiments import harness

STRATEGIES = ("naive", "packnet", "lrpet")


def main(argv: list[str] | None = None) -> int:
    p = harness.parser("experiments.wandb_classil", __doc__, "wandb-classil-synthetic-<date>.md")
    p.add_argument("--steps", type=int, default=30)
    a = p.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    harness.quiet_lightning()
    from cl_compress.engine import metrics
    from cl_compress.tracking.offline import read_run

    root = harness.RUNS / "wandb-classil"
    group = f"wandb-classil-{harness.today()}"
    common = ["benchmark=synthetic", "benchmark.scenario=class", "logger=wandb",
              f"logger.group={group}", "train.epochs=null", f"train.steps_per_task={a.steps}",
              "trainer.progress_bar=false"]
    results, runs = {}, {}
    for s in STRATEGIES:
        run_dir = root / s
        if s == "lrpet":  # interrupted after task 1, then resumed
            def crash(t, model, strategy):
                if t == 1:
                    raise KeyboardInterrupt

            try:
                harness.run_inprocess(common + [f"strategy={s}"], run_dir, on_task_end=crash)
            except KeyboardInterrupt:
                pass
            from cl_compress.settings.compose import compose_config

            from cl_compress.train import build_and_run

            results[s] = build_and_run(compose_config(common + [f"strategy={s}", "resume=true"]),
                                       run_dir)
        else:
            results[s] = harness.run_inprocess(common + [f"strategy={s}"], run_dir)
        runs[s] = read_run(Path(results[s]["wandb"]["dir"]), wait=120)

    def acc_keys(r):
        return {k for row in r.history for k in row if k.startswith(("eval/", "stream/"))
                and isinstance(row[k], int | float) and not k.startswith(("eval/acc_matrix",
                                                                          "eval/acc_before"))}

    keysets = {s: acc_keys(r) for s, r in runs.items()}
    shared = set.intersection(*keysets.values())
    lines = [harness.header("W&B class-IL comparison read back from the offline records "
                            "(synthetic)", "experiments.wandb_classil", argv,
                            f"{len(STRATEGIES)} runs, benchmark=synthetic (3 tasks), "
                            f"benchmark.scenario=class, {a.steps} optimiser steps per task for "
                            f"every strategy, group `{group}`",
                            "read with cl_compress.tracking.offline.read_run (W&B's protobuf "
                            "records)")]
    lines += ["## Keys", "", f"shared accuracy/forgetting keys: {len(shared)}; only in one "
              f"strategy: " + ", ".join(f"{s}: {sorted(k - shared) or 'none'}"
                                         for s, k in keysets.items()), ""]
    mismatches = 0
    rows = ["| strategy | eval/acc/avg_seen (class-IL) at the last task | eval/task_il/avg_seen "
            "(task-IL) | stream/forgetting | stream/task_il/forgetting | results.json avg_acc "
            "/ task_il.avg_acc |", "|---|---|---|---|---|---|"]
    for s, r in runs.items():
        res = results[s]
        M, TIL = res["acc_matrix"], res["task_il"]["acc_matrix"]
        for row in r.history:
            if "task" not in row:
                continue
            i = row["task"]
            want = {f"eval/acc/task_{j}": M[i][j] for j in range(i + 1)} | \
                {f"eval/task_il/acc/task_{j}": TIL[i][j] for j in range(i + 1)}
            if i:
                want["stream/forgetting"] = metrics.forgetting([x[:i + 1] for x in M[:i + 1]])
                want["stream/task_il/forgetting"] = metrics.forgetting([x[:i + 1] for x in TIL[:i + 1]])
            mismatches += sum(abs(row[k] - v) > 1e-9 for k, v in want.items() if k in row)
        last = [row for row in r.history if "eval/acc/avg_seen" in row][-1]
        rows.append(f"| {s} | {last['eval/acc/avg_seen']:.4f} | {last['eval/task_il/avg_seen']:.4f} | "
                    f"{last['stream/forgetting']:.4f} | {last['stream/task_il/forgetting']:.4f} | "
                    f"{res['avg_acc']:.4f} / {res['task_il']['avg_acc']:.4f} |")
    lines += rows + ["", f"history values that differ from results.json's matrices (class-IL "
                     f"under eval/acc, task-IL under eval/task_il): {mismatches}", ""]
    r = runs["lrpet"]
    live = sorted((root / "lrpet" / "wandb").glob("offline-run-*"))
    retired = sorted((root / "lrpet" / "wandb").glob("replayed-offline-run-*"))
    per_task = sorted({(row["task"], k) for row in r.history for k in row
                       if k.startswith("eval/acc/task_")})
    lines += ["## Per-task scalars and the resumed run (lrpet)", "",
              f"- eval/acc/task_j logged at x = task i: {per_task}",
              f"- tasks of the eval rows: {[row['task'] for row in r.rows_with('eval/acc/avg_seen')]}",
              f"- _step continuous: {[row['_step'] for row in r.history] == list(range(len(r.history)))}"
              f" ({len(r.history)} rows)",
              f"- offline folders: {len(live)} live, {len(retired)} replayed and retired",
              f"- upload: `{results['lrpet']['wandb']['sync'].replace(str(Path.cwd()) + '/', '')}`", ""]
    out = Path(a.out) if a.out else harness.RESULTS / f"wandb-classil-synthetic-{harness.today()}.md"
    from cl_compress.rundir.io import write_text

    write_text(out, "\n".join(lines))
    print("\n".join(lines))
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
