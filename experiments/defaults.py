"""``make bench-defaults``: every registered strategy at the embedded defaults, as
``make exp STRATEGY=<name>`` runs it (no ARGS), on the default stream.

Prints a table (training steps per task of every row, extra steps, accuracy, stored
parameters, ratio against ``individual``) and the acceptance check of the defaults: CACL
stores >= 3x fewer parameters than ``individual`` with average accuracy at most 1 point
below it (``cl_compress.report.claims.THRESHOLDS.targets["cacl_vs_individual"]``; a check that can
come out either way: at the old 2-epoch default, 188 steps per task, CACL compressed 1.18x).
Writes ``experiments/results/defaults-<date>.md``.

Usage: python -m experiments.defaults [--strategies "cacl individual"] [--benchmark B]
           [--seed S] [--out PATH] [hydra overrides for every run]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cl_compress.report import claims
from cl_compress.strategies import builtin_names
from experiments import harness

RESULTS = Path(__file__).parent / "results"


def run(strategy: str, benchmark: str, seed: int, extra: list[str], root: Path) -> tuple[dict, float]:
    return harness.run_cli([f"strategy={strategy}", f"benchmark={benchmark}", f"seed={seed}", *extra],
                           root / strategy)


def cacl_check(rows: dict[str, dict]) -> str:
    """The target ``cacl_vs_individual`` of :data:`cl_compress.report.claims.THRESHOLDS` (the one set
    of thresholds the report and every bench script use), on this seed's runs."""
    if "cacl" not in rows or "individual" not in rows:
        return "CACL check: not measured (needs cacl and individual)"
    groups = claims.groups_from_results({"individual": rows["individual"], "cacl": rows["cacl"]})
    met, text = claims.size_target(groups["cacl"], groups["individual"], "cacl_vs_individual")
    verdict = "met" if met else "MISSED"
    return f"CACL check (`cl_compress.report.claims` target `cacl_vs_individual`): **{verdict}**: {text}"


def main(argv: list[str] | None = None) -> int:
    p = harness.parser("experiments.defaults", __doc__, "defaults-<date>.md")
    p.add_argument("--strategies", help="space-separated names (default: every registered strategy)")
    p.add_argument("--benchmark", default="split_fmnist")
    p.add_argument("--seed", type=int, default=0)
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
    cmd = harness.command("experiments.defaults", argv)
    text = "\n".join([
        f"# Embedded defaults: `make exp STRATEGY=<name>` on {args.benchmark} (seed {args.seed})", "",
        f"- command: `{cmd}`", f"- date: {harness.now()}",
        f"- machine: {harness.machine(threads=False)}",
        "- budget: the default `train.steps_per_task` for every strategy (extra phases included); "
        "extra steps are taken outside it and shown apart", "",
        *lines, "", check, "",
    ])
    print("\n" + text)
    harness.write_results(text, args.out, f"defaults-{harness.today()}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
