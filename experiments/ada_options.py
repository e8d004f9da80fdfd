"""Ada-QPacknet options measured on split_fmnist (task-IL): the codebook the k-means is fitted
on (``owned_nonzero`` vs the authors' ``layer_with_zeros``) and the candidate scoring of the
sparsity search (``prune_trained`` vs ``authors``).

Codebook: two runs with ``strategy.tolerance=100`` so that every bit-width from 6 down to 1 is
tried on every task; the table gives the held-out accuracy drop (points, vs the float
sub-network) at 2 and 1 bits, per task and averaged. Search: two runs at the defaults; avg acc,
bits per task, weight-weighted prune fraction and the search's steps and seconds per candidate.

Usage: python -m experiments.ada_options [--train-per-task 2000] [--steps 200] [--out PATH]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cl_compress.compose import compose_config
from cl_compress.train import build_and_run

from . import harness

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "ada_options"


def drops(res: dict, bits: int) -> list[float]:
    q = res["strategy_extra"]["quantisation"]
    return [next(tr["drop_points"] for tr in q[str(t)]["trials"] if tr["bits"] == bits)
            for t in range(len(q))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-per-task", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    for noisy in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    base = ["benchmark=split_fmnist", f"benchmark.max_train_per_task={args.train_per_task}",
            f"train.steps_per_task={args.steps}", "logger=none", "trainer.progress_bar=false",
            "seed=0", "overwrite=true", "strategy=ada_qpacknet"]
    runs = {"codebook=owned_nonzero": ["strategy.tolerance=100"],
            "codebook=layer_with_zeros": ["strategy.tolerance=100",
                                          "strategy.codebook=layer_with_zeros"],
            "search_mode=prune_trained": [],
            "search_mode=authors": ["strategy.search_mode=authors"]}
    res = {}
    for tag, extra in runs.items():
        res[tag] = build_and_run(compose_config(base + extra), RUNS / tag.replace("=", "-"))
        print(f"{tag}: avg_acc={res[tag]['avg_acc']:.4f}", flush=True)
    lines = ["## Codebook: held-out drop (points) at 2 and 1 bits (tolerance=100: all widths tried)",
             "", "| codebook | drop at 2 bits per task | mean | drop at 1 bit per task | mean |",
             "|---|---|---|---|---|"]
    for tag in ("codebook=owned_nonzero", "codebook=layer_with_zeros"):
        d2, d1 = drops(res[tag], 2), drops(res[tag], 1)
        lines.append(f"| {tag.split('=')[1]} | {' '.join(f'{v:.2f}' for v in d2)} | "
                     f"{sum(d2) / len(d2):.2f} | {' '.join(f'{v:.2f}' for v in d1)} | "
                     f"{sum(d1) / len(d1):.2f} |")
    lines += ["", "## Search candidate scoring (defaults otherwise)", "",
              "| search_mode | avg acc | bits per task | prune fraction per task (weights) | "
              "search steps | s per candidate (median) | train steps |", "|---|---|---|---|---|---|---|"]
    for tag in ("search_mode=prune_trained", "search_mode=authors"):
        r = res[tag]
        x, b = r["strategy_extra"], r["budget"]
        secs = sorted(c["seconds"] for log in x["search"].values() for c in log)
        lines.append(f"| {tag.split('=')[1]} | {r['avg_acc']:.4f} | {x['bits_per_task']} | "
                     f"{' '.join(f'{p:.3f}' for p in x['prune_fraction'])} | "
                     f"{b['extra_steps'].get('search', 0)} | {secs[len(secs) // 2]:.2f} | "
                     f"{b['train_steps']} |")
    text = "\n".join(lines)
    print(text)
    first = next(iter(res.values()))
    ada = first["strategy_config"]
    doc = harness.header(
        "Ada-QPacknet options on split_fmnist", "experiments.ada_options", argv,
        f"setup: split_fmnist (5 tasks x 2 classes), {args.train_per_task} training images "
        f"per task, {harness.setup_of(first)}, train.steps_per_task={args.steps}, seed 0, "
        f"capacity={ada['capacity']}, population {ada['population']}, "
        f"{ada['search_epochs']} search epoch(s)") + text
    harness.write_results(doc, args.out, f"ada-options-{harness.today()}.md")


if __name__ == "__main__":
    main()
