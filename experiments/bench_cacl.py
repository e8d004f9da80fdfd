"""``make bench-cacl``: CACL vs ``individual`` vs ``packnet`` on split_fmnist (task-IL).

All runs share the framework defaults (MLP 784-256-256, Adam lr 1e-3, batch 128, 2 epochs
per task, seed 0; packnet adds its 1 post-prune retraining epoch). CACL factorises both
hidden Linear layers. Targets (issue 5): CACL stores >= 3x fewer parameters than
``individual`` with avg_acc within 1 point of it.

Usage: python -m experiments.bench_cacl [--quick] [--authors] [--out PATH]
  --quick    2000 training samples per task (smoke test, figures not comparable)
  --authors  also run CACL with the authors' hyper-parameters (sigma lr x1, energy 3e-5):
             much slower on CPU (its rank grows by ~170 components per task)
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

from cl_compress.strategies import builtin_names
from cl_compress.testing import compose_config
from cl_compress.train import build_and_run

RESULTS = Path(__file__).parent / "results"
RUNS = Path("runs/bench_cacl")
COMMON = ["benchmark=split_fmnist", "logger=none", "trainer.progress_bar=false", "train.epochs=2",
          "seed=0"]
# short-schedule tuning: sigma learns 10x faster so that Hoyer can zero it within 2 epochs
CACL_TUNED = ["strategy=cacl", "strategy.sigma_lr_scale=10", "strategy.energy_sv=0.001"]
RUNS_DEFAULT = [("individual", ["strategy=individual"]), ("packnet", ["strategy=packnet"]),
                ("cacl (tuned)", CACL_TUNED)]
RUN_AUTHORS = ("cacl (authors' hp)", ["strategy=cacl"])


def run_one(name: str, overrides: list[str], quick: bool) -> dict:
    extra = ["benchmark.max_train_per_task=2000"] if quick else []
    cfg = compose_config(COMMON + overrides + extra + ["overwrite=true"])
    run_dir = RUNS / name.split(" ")[0] / ("quick" if quick else "full") / name.replace(" ", "_")
    for f in ("checkpoint.pt", "metrics.csv"):  # a fresh run every time
        (run_dir / f).unlink(missing_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    res = build_and_run(cfg, run_dir)
    res["wall"], res["cpu"] = time.perf_counter() - t0, time.process_time() - c0
    return res


def row(name: str, overrides: list[str], r: dict, ref: dict | None) -> str:
    c = r["compression"]
    d_acc = f"{100 * (r['avg_acc'] - ref['avg_acc']):+.2f}" if ref else "-"
    p_ratio = f"{ref['compression']['stored_params'] / c['stored_params']:.2f}x" if ref else "-"
    ranks = r.get("strategy_extra", {}).get("ranks")
    rk = ", ".join(f"{k}: {v[-1]}" for k, v in ranks.items()) if ranks else "-"
    over = " ".join(o for o in overrides if not o.startswith("strategy=")) or "defaults"
    return (f"| {name} | `{over}` | {r['avg_acc']:.4f} | {d_acc} | {r['forgetting']:.4f} | "
            f"{c['stored_params']:,} | {p_ratio} | {c['ratio_vs_individual']:.2f}x | "
            f"{c['model_bytes']:,} | {r['train_seconds']:.0f} | {r['cpu']:.0f} | {rk} |")


def reading(res: dict[str, dict], missing: list[str]) -> str:
    ind, cacl = res["individual"], res["cacl (tuned)"]
    ratio = ind["compression"]["stored_params"] / cacl["compression"]["stored_params"]
    gap = 100 * (ind["avg_acc"] - cacl["avg_acc"])
    txt = (f"CACL (tuned) stores {ratio:.2f}x fewer parameters than `individual` (target >= 3x: "
           f"{'met' if ratio >= 3 else 'missed'}) at avg_acc {cacl['avg_acc']:.4f} against "
           f"{ind['avg_acc']:.4f}, {gap:.2f} points lower (target <= 1 point: "
           f"{'met' if gap <= 1 else 'missed'}); its forgetting is {cacl['forgetting']:.4f} "
           f"(frozen components, per-task ranks). ")
    if "packnet" in res:
        pn = res["packnet"]
        smaller = cacl["compression"]["stored_bits"] < pn["compression"]["stored_bits"]
        pr = ind["compression"]["stored_params"] / pn["compression"]["stored_params"]
        txt += (f"PackNet reaches avg_acc {pn['avg_acc']:.4f} with one dense body plus masks "
                f"({pr:.2f}x fewer parameters, {pn['compression']['ratio_vs_individual']:.2f}x "
                f"fewer bits than `individual`), so CACL is "
                f"{'smaller' if smaller else 'larger'}"
                f" than PackNet in stored bits ({cacl['compression']['stored_bits']:,} vs "
                f"{pn['compression']['stored_bits']:,}) and "
                f"{abs(100 * (cacl['avg_acc'] - pn['avg_acc'])):.2f} points "
                f"{'above' if cacl['avg_acc'] >= pn['avg_acc'] else 'below'} it in accuracy. ")
    else:
        txt += f"Not run (not registered): {', '.join(missing)}. "
    txt += ("Deviation from the authors: with 2 epochs (~190 Adam steps per task at lr 1e-3) sigma, "
            "initialised standard-normal, cannot travel to zero, so Hoyer cannot sparsify it and the "
            "3e-5 energy rule keeps almost every new component; the tuned run gives sigma a 10x "
            "learning rate (`strategy.sigma_lr_scale=10`) and truncates at 0.1% of the new energy. ")
    if RUN_AUTHORS[0] in res:
        a = res[RUN_AUTHORS[0]]
        ar = ind["compression"]["stored_params"] / a["compression"]["stored_params"]
        txt += (f"With the authors' values CACL keeps avg_acc {a['avg_acc']:.4f} but compresses "
                f"only {ar:.2f}x. ")
    return txt + "Train times were measured on a machine shared with other jobs (see CPU s)."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2000 training samples per task")
    ap.add_argument("--authors", action="store_true", help="also run CACL with the authors' hp")
    ap.add_argument("--out", default=None, help="Markdown file (default experiments/results/)")
    args = ap.parse_args(argv)
    for noisy in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    known = set(builtin_names())
    todo = RUNS_DEFAULT + ([RUN_AUTHORS] if args.authors else [])
    missing = [n for n, o in todo if o[0].split("=")[1] not in known]
    for n in missing:
        print(f"strategy {n!r} is not registered yet; skipping it", flush=True)
    res: dict[str, dict] = {}
    for name, over in todo:
        if name in missing:
            continue
        res[name] = run_one(name, over, args.quick)
        print(row(name, over, res[name], res.get("individual")), flush=True)

    date = dt.date.today().isoformat()
    cmd = " ".join(["python -m experiments.bench_cacl", *(argv if argv is not None else sys.argv[1:])])
    ind = res["individual"]
    lines = [
        f"# CACL vs individual vs PackNet on split_fmnist (task-IL), {date}", "",
        f"Command: `{cmd}` (`make bench-cacl`)  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, no GPU; "
        f"torch {torch.__version__}.  ",
        f"Setup: 5 tasks x 2 classes{' (2000 training samples per task)' if args.quick else ''}, "
        "MLP 784-256-256, one head per task, Adam lr 1e-3, batch 128, 2 epochs per task, seed 0 "
        "(common overrides: `" + " ".join(COMMON) + "`).", "",
        "| run | overrides | avg_acc | vs individual (points) | forgetting | stored params | "
        "params ratio vs individual | bits ratio vs individual | model_bytes | train s | CPU s | "
        "final rank per layer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(n, o, res[n], ind) for n, o in todo if n in res]
    lines += ["", "Per-layer cumulative rank used by each task (layer0 = Linear 784-256, initial rank "
              "192; layer1 = Linear 256-256, initial rank 128):", ""]
    for n, r in res.items():
        for layer, ranks in r.get("strategy_extra", {}).get("ranks", {}).items():
            lines.append(f"- {n}, {layer}: {' -> '.join(map(str, ranks))}")
    lines += ["", "Accuracy matrices (row i: after task i):", ""]
    for n, r in res.items():
        lines.append(f"- {n}: " + " / ".join(" ".join(f"{a:.3f}" for a in rw) for rw in r["acc_matrix"]))
    lines += ["", "Reading: " + reading(res, missing), ""]
    text = "\n".join(lines)
    print("\n" + text)
    path = Path(args.out) if args.out else RESULTS / f"cacl-{date}{'-quick' if args.quick else ''}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
