"""``make bench-ada-qpacknet``: Ada-QPacknet versus PackNet on split_fmnist (task-IL).

One process runs, with the repository defaults (MLP 784-256-256, Adam lr 1e-3, batch 128,
2 epochs per task, seed 0): ``packnet`` (prune 0.5, fp32 weights), ``ada_qpacknet`` with
k-means codebooks (the authors' non-linear quantiser) and, unless ``--no-linear``, with the
linear asymmetric quantiser. Each Ada-QPacknet artifact is reloaded in a fresh process
(``torch.load(weights_only=True)``) and its test accuracies are compared with the last row
of the accuracy matrix. Prints a Markdown table and writes it, with the command, date,
machine and a reading, to ``experiments/results/ada_qpacknet-<date>.md``.

Usage: python -m experiments.bench_ada_qpacknet [--quick] [--no-linear] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

from cl_compress import claims
from cl_compress.testing import compose_config
from cl_compress.train import build_and_run

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
RUNS = REPO / "runs" / "bench_ada_qpacknet"
BASE = ["benchmark=split_fmnist", "logger=none", "trainer.progress_bar=false", "seed=0"]

def reload_row(run_dir: Path, overrides: list[str]) -> list[float]:
    """Test accuracies of the saved artifact, computed in a fresh Python process."""
    cmd = [sys.executable, "-m", "cl_compress.reload", str(run_dir / "model_artifact.pt"), *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(tag: str, overrides: list[str]) -> dict:
    res = build_and_run(compose_config(overrides + ["overwrite=true"]), RUNS / tag)
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
    """The figures, judged by the shared checks of :mod:`cl_compress.claims` (the project's
    targets vs PackNet and the paper's claim, with the thresholds documented there)."""
    k = ada[0]
    c = k["compression"]
    groups = claims.groups_from_results({"packnet": pk, "ada_qpacknet": k})
    targets = claims.ada_targets(groups["ada_qpacknet"], groups["packnet"])
    paper = claims.ada_qpacknet(groups)
    checks = [
        f"avg_acc {k['avg_acc']:.4f} vs PackNet {pk['avg_acc']:.4f}",
        *(line for _, line in targets),
        f"counting the owner index and codebooks too, the body costs "
        f"{c['body_bits_per_used_weight']:.2f} bits per used weight",
        f"paper claim (`cl_compress.claims.ada_qpacknet`): **{paper.verdict}** ({paper.evidence})",
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
    caveats = (
        f"The k-means bit-width search ended at the lowest width it tries (1 bit, 2 clusters) on "
        f"{lowest} of {len(q)} tasks with at most {worst:.2f} points of held-out drop: the "
        f"two-class split_fmnist tasks are too easy to make the 2-point tolerance bind, so the "
        f"paper's finding (hybrid 8-/4-bit sub-networks on harder benchmarks) is not exercised "
        f"here. The comparison with PackNet is not single-factor: "
        f"the policies that differ are listed in the paper-claim evidence above. Times are "
        f"wall-clock seconds on a shared 2-core machine with "
        f"other jobs running, so only indicative; Ada-QPacknet's strategy time is mostly the "
        f"sparsity search (population x search epochs of fine-tuning per task).")
    return "; ".join(checks) + ". " + caveats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 training samples per task")
    ap.add_argument("--no-linear", action="store_true", help="skip the linear quantiser run")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    for noisy in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    base = BASE + (["benchmark.max_train_per_task=500"] if args.quick else [])
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
    today = dt.date.today().isoformat()
    cmd = "python -m experiments.bench_ada_qpacknet " + " ".join(sys.argv[1:])
    doc = (f"# Ada-QPacknet vs PackNet on split_fmnist (task-IL)\n\n"
           f"- command: `{cmd.strip()}` (`make bench-ada-qpacknet`)\n- date: {today}\n"
           f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU; "
           f"Python {platform.python_version()}\n"
           f"- setup: MLP 784-256-256, Adam lr 1e-3, batch 128, 2 epochs + 1 retrain epoch per "
           f"task, seed 0{', 500 training samples per task' if args.quick else ''}; Ada-QPacknet "
           f"defaults (prune ratios searched in [0.4, 0.7], population 4, 1 search epoch, "
           f"10% of each training split held out, 2-point tolerance)\n\n{text}\n\n"
           f"Reading: {reading(pk, results[1:])}\n")
    out = args.out or RESULTS / f"ada_qpacknet-{today}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
