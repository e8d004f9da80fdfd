"""``make bench-ada-qpacknet``: Ada-QPacknet versus PackNet on split_fmnist (task-IL).

One process runs, with the repository defaults (MLP 784-256-256, Adam lr 1e-3, batch 128,
2 epochs per task, seed 0): ``packnet`` (prune 0.5, fp32 weights), ``ada_qpacknet`` with
k-means codebooks (the authors' non-linear quantiser) and, unless ``--no-linear``, with the
linear asymmetric quantiser. Each Ada-QPacknet artifact is reloaded in a fresh process
(``torch.load(weights_only=True)``) and its test accuracies are compared with the last row
of the accuracy matrix. Prints a Markdown table and writes it, with the command, date,
machine and a reading, to ``experiments/results/ada_qpacknet-<date>.md``.

Usage: python -m experiments.bench_ada_qpacknet [--quick] [--no-linear] [--steps N] [--out PATH]
  --steps N  optimiser steps per task for every run (default: the framework's
             ``train.steps_per_task``); a small N with --quick is a smoke test only
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cl_compress.report import claims
from experiments import harness

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "bench_ada_qpacknet"
BASE = ["benchmark=split_fmnist", "logger=none", "trainer.progress_bar=false", "seed=0"]


def reload_row(run_dir: Path, overrides: list[str]) -> list[float]:
    """Test accuracies of the saved artifact, computed in a fresh Python process."""
    cmd = [sys.executable, "-m", "cl_compress.evaluate_artifact", str(run_dir / "model_artifact.pt"),
           *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["acc_row"]


def run(tag: str, overrides: list[str]) -> dict:
    res = harness.run_inprocess(overrides, RUNS / tag)
    res["tag"], res["overrides"] = tag, overrides
    return res


def table(results: list[dict], ref_bytes: int, ref_acc: float) -> str:
    head = ("| run | avg_acc | Δ vs PackNet (pts) | forgetting | last row | bits per task | "
            "mean code bits | body bits / used weight | model_bytes | PackNet bytes / bytes | "
            "mean prune ratio per task | reload == row | train s | strategy s |")
    lines = [head, "|" + "---|" * 14]
    for r in results:
        c, x = r["compression"], r["strategy_extra"]
        bits = x.get("bits_per_task")
        prune = x.get("prune_fraction", [])
        body = f"{c['body_bits_per_used_weight']:.2f}" if "body_bits_per_used_weight" in c else "n/a"
        lines.append(
            f"| {r['tag']} | {r['avg_acc']:.4f} | {100 * (r['avg_acc'] - ref_acc):+.2f} | "
            f"{r['forgetting']:.4f} | {' '.join(f'{a:.3f}' for a in r['acc_matrix'][-1])} | "
            f"{' '.join(map(str, bits)) if bits else '32 (fp32)'} | "
            f"{c.get('mean_code_bits', 32.0):.2f} | "
            f"{body} | {c['model_bytes']} | "
            f"{ref_bytes / c['model_bytes']:.2f}x | {' '.join(f'{p:.2f}' for p in prune)} | "
            f"{r.get('reload_ok', 'n/a')} | {r['timing']['train_seconds']:.0f} | "
            f"{r['timing']['strategy_seconds']:.0f} |")
    return "\n".join(lines)


def reading(pk: dict, ada: list[dict]) -> str:
    """The figures, judged by the shared checks of :mod:`cl_compress.report.claims` (the project's
    targets vs PackNet and the paper's claim, with the thresholds documented there)."""
    k = ada[0]
    c = k["compression"]
    groups = claims.groups_from_results({"packnet": pk, "ada_qpacknet": k})
    targets = claims.ada_targets(groups["ada_qpacknet"], groups["packnet"])
    paper = claims.check("ada_qpacknet")(groups)
    checks = [
        f"avg_acc {k['avg_acc']:.4f} vs PackNet {pk['avg_acc']:.4f}",
        *(line for _, line in targets),
        f"counting the owner index and codebooks too, the body costs "
        f"{c['body_bits_per_used_weight']:.2f} bits per used weight",
        f"paper claim (`cl_compress.report.papers.ada_qpacknet`): **{paper.verdict}** ({paper.evidence})",
        f"bit-width chosen per task (k-means): {k['strategy_extra']['bits_per_task']}",
        f"artifact reloaded in a fresh process gives the same accuracy row: {k['reload_ok']}",
    ]
    for r in ada[1:]:
        checks.append(f"{r['tag']}: avg_acc {r['avg_acc']:.4f}, bits per task "
                      f"{r['strategy_extra']['bits_per_task']}, model_bytes "
                      f"{r['compression']['model_bytes']}, reload identical: {r['reload_ok']}")
    q = k["strategy_extra"]["quantisation"]
    lowest = sum(v["bits"] == v["trials"][-1]["bits"] and v["tolerance_met"] for v in q.values())
    worst = max(v["trials"][[t["bits"] for t in v["trials"]].index(v["bits"])]["drop_points"]
                for v in q.values())
    low, tol = k["strategy_config"]["min_bits"], k["strategy_config"]["tolerance"]
    easy = (f"the two-class split_fmnist tasks are too easy to make the {tol:g}-point tolerance "
            f"bind, so the paper's finding (hybrid 8-/4-bit sub-networks on harder benchmarks) is "
            f"not exercised here" if lowest == len(q) else
            f"on the other tasks the tolerance stopped the search above {low} bit(s)")
    caveats = (
        f"The k-means bit-width search ended at the lowest width it tries ({low} bit(s), "
        f"{2 ** low} clusters) on {lowest} of {len(q)} tasks with at most {worst:.2f} points of "
        f"held-out drop: {easy}. The comparison with PackNet is not single-factor: "
        f"the policies that differ are listed in the paper-claim evidence above. Times are "
        f"wall-clock seconds on a shared 2-core machine with "
        f"other jobs running, so only indicative; Ada-QPacknet's strategy time is mostly the "
        f"sparsity search (population x search epochs of fine-tuning per task).")
    return "; ".join(checks) + ". " + caveats


def setup(pk: dict, ada: dict, quick: bool) -> str:
    """The setup line, read from the runs' own configs (not restated by hand)."""
    c, x = pk["config"], ada["strategy_config"]
    t, m = c["train"], c["model"]
    budget = (f"{t['steps_per_task']} optimiser steps per task (PackNet and Ada-QPacknet: "
              f"train + retrain phases share them)" if t.get("steps_per_task")
              else f"{t['epochs']} epochs + {x['retrain_epochs']} retrain epoch(s) per task")
    return (f"MLP {m.get('hidden')}, {t['optimizer']} lr {t['lr']}, batch {t['batch_size']}, "
            f"{budget}, seed {pk['seed']}{', 500 training samples per task' if quick else ''}; "
            f"Ada-QPacknet defaults (capacity `{x['capacity']}`, prune ratios searched in "
            f"[{x['v_min']}, {x['v_max']}], population {x['population']}, {x['search_epochs']} "
            f"search epoch(s), {100 * x['val_fraction']:g}% of each training split held out, "
            f"{x['tolerance']:g}-point tolerance)")


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.bench_ada_qpacknet", __doc__, "ada_qpacknet-<date>.md")
    ap.add_argument("--quick", action="store_true", help="500 training samples per task")
    ap.add_argument("--no-linear", action="store_true", help="skip the linear quantiser run")
    ap.add_argument("--steps", type=int, default=None,
                    help="optimiser steps per task for every run (default: train.steps_per_task)")
    args = ap.parse_args(argv)
    harness.quiet_lightning()
    base = BASE + (["benchmark.max_train_per_task=500"] if args.quick else []) \
        + ([f"train.steps_per_task={args.steps}"] if args.steps else [])
    runs = [("packnet", ["strategy=packnet"]), ("ada_qpacknet kmeans", ["strategy=ada_qpacknet"])]
    if not args.no_linear:
        runs.append(("ada_qpacknet linear_asym",
                     ["strategy=ada_qpacknet", "strategy.quant_method=linear_asym"]))
    results = []
    for tag, extra in runs:
        res = run(tag.replace(" ", "_"), base + extra)
        res["tag"] = tag
        if extra[0] == "strategy=ada_qpacknet":
            res["reload_ok"] = reload_row(RUNS / tag.replace(" ", "_"), base + extra) == \
                res["acc_matrix"][-1]
        results.append(res)
        print(f"{tag}: avg_acc={res['avg_acc']:.4f} model_bytes={res['compression']['model_bytes']}",
              flush=True)
    pk = results[0]
    text = table(results, pk["compression"]["model_bytes"], pk["avg_acc"])
    print(text)
    today = harness.today()
    doc = (f"# Ada-QPacknet vs PackNet on split_fmnist (task-IL)\n\n"
           f"- command: `{harness.command('experiments.bench_ada_qpacknet', argv)}` "
           f"(`make bench-ada-qpacknet`)\n- date: {today}\n"
           f"- machine: {harness.machine(shared=True)}\n"
           f"- setup: {setup(pk, results[1], args.quick)}\n\n{text}\n\n"
           f"Reading: {reading(pk, results[1:])}\n")
    harness.write_results(doc, args.out, f"ada_qpacknet-{today}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
