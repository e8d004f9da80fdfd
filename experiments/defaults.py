"""``make bench-defaults``: every registered strategy at the embedded defaults, as
``make exp STRATEGY=<name>`` runs it (no ARGS), on the default stream.

Prints a table (training steps per task of every row, extra steps, accuracy, stored
parameters, ratio against ``individual``) and the acceptance check of the defaults: CACL
stores >= 3x fewer parameters than ``individual`` with average accuracy at most 1 point
below it (``cl_compress.claims.THRESHOLDS.targets["cacl_vs_individual"]``; a check that can
come out either way: at the old 2-epoch default, 188 steps per task, CACL compressed 1.18x).
Writes ``experiments/results/defaults-<date>.md``.

Usage: python -m experiments.defaults [--strategies "cacl individual"] [--benchmark B]
           [--seed S] [--out PATH] [hydra overrides for every run]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cl_compress import claims
from cl_compress.strategies import builtin_names

RESULTS = Path(__file__).parent / "results"


def run(strategy: str, benchmark: str, seed: int, extra: list[str], root: Path) -> tuple[dict, float]:
    run_dir = root / strategy
    cmd = [sys.executable, "-m", "cl_compress.train", f"strategy={strategy}",
           f"benchmark={benchmark}", f"seed={seed}", "logger=none", "trainer.progress_bar=false",
           f"hydra.run.dir={run_dir}", *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return json.loads((run_dir / "results.json").read_text()), time.perf_counter() - t0


def cacl_check(rows: dict[str, dict]) -> str:
    """The target ``cacl_vs_individual`` of :data:`cl_compress.claims.THRESHOLDS` (the one set
    of thresholds the report and every bench script use), on this seed's runs."""
    if "cacl" not in rows or "individual" not in rows:
        return "CACL check: not measured (needs cacl and individual)"
    groups = claims.groups_from_results({"individual": rows["individual"], "cacl": rows["cacl"]})
    met, text = claims.size_target(groups["cacl"], groups["individual"], "cacl_vs_individual")
    verdict = "met" if met else "MISSED"
    return f"CACL check (`cl_compress.claims` target `cacl_vs_individual`): **{verdict}**: {text}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.defaults", description=__doc__.split("\n")[0])
    p.add_argument("--strategies", help="space-separated names (default: every registered strategy)")
    p.add_argument("--benchmark", default="split_fmnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="result file (default: experiments/results/defaults-<date>.md)")
    args, extra = p.parse_known_args(argv)
    names = args.strategies.split() if args.strategies else builtin_names()
    rows: dict[str, dict] = {}
    wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="clc-defaults-") as tmp:
        for name in names:
            rows[name], wall[name] = run(name, args.benchmark, args.seed, extra, Path(tmp))
            r = rows[name]
            print(f"{name}: avg_acc {r['avg_acc']:.4f}, steps/task {r['budget']['train_steps_per_task']}, "
                  f"ratio {r['compression']['ratio_vs_individual']:.2f}x ({wall[name]:.0f} s)", flush=True)
    ind = rows.get("individual")
    lines = [
        "| strategy | train steps/task | extra steps (whole run) | avg acc % | forgetting % | stored params "
        "| × fewer params than individual | ratio vs individual (bits) | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        b, c = r["budget"], r["compression"]
        fewer = f"{ind['compression']['stored_params'] / c['stored_params']:.2f}" if ind else "-"
        extra_steps = ", ".join(f"{k} {v}" for k, v in b["extra_steps"].items()) or "0"
        lines.append(
            f"| `{name}` | {'/'.join(str(s) for s in sorted(set(b['train_steps_per_task'])))} "
            f"| {extra_steps} | {100 * r['avg_acc']:.2f} | {100 * r['forgetting']:.2f} "
            f"| {c['stored_params']:,} | {fewer} | {c['ratio_vs_individual']:.2f} | {wall[name]:.0f} |")
    check = cacl_check(rows)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    stamp = dt.datetime.now()
    cmd = shlex.join(["python", "-m", "experiments.defaults", *(argv if argv is not None else sys.argv[1:])])
    text = "\n".join([
        f"# Embedded defaults: `make exp STRATEGY=<name>` on {args.benchmark} (seed {args.seed})", "",
        f"- command: `{cmd}`", f"- date: {stamp:%Y-%m-%d %H:%M}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        "- budget: the default `train.steps_per_task` for every strategy (extra phases included); "
        "extra steps are taken outside it and shown apart", "",
        *lines, "", check, "",
    ])
    print("\n" + text)
    out = Path(args.out) if args.out else RESULTS / f"defaults-{stamp:%Y-%m-%d}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
