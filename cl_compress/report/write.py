"""Write the comparison report of a sweep: ``report.md`` + PNGs + ``runs.csv`` +
``summary.json`` (``python -m cl_compress.report <sweep dir> [--out DIR]``). Last stage:
it imports the others (load → tables / plots → write); nothing imports it but the package."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cl_compress.report import plots as rp
from cl_compress.report.claims import (
    budget_check,
    budget_table,
    claims,
    claims_markdown,
    config_differences,
    thresholds_markdown,
)
from cl_compress.report.load import load_sweep
from cl_compress.report.tables import (
    capacity_markdown,
    capacity_rows,
    class_il_markdown,
    common_settings,
    lrpet_energy_markdown,
    lrpet_energy_rows,
    pareto,
    portable_text,
    slug,
    summary_markdown,
    summary_rows,
    tuning_lines,
    wandb_markdown,
    write_runs_csv,
)
from cl_compress.rundir.io import write_json


def write_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.md``, its PNGs, ``runs.csv`` and ``summary.json``; returns report.md."""
    from cl_compress.strategies.registry import registered_names  # torch: only when a report is written

    sweep = load_sweep(sweep_dir)
    if not sweep.runs:
        raise ValueError(f"no finished run (results.json) below {sweep.root}")
    out_dir = Path(out) if out else sweep.root
    out_dir.mkdir(parents=True, exist_ok=True)
    m = sweep.meta
    if isinstance(m.get("tuning"), dict):  # an older sweep.json may hold a storage secret
        from cl_compress.rundir.redact import redact_tuning

        m = {**m, "tuning": redact_tuning(m["tuning"])}
    md = ["# Strategy comparison", "",
          f"- sweep: `{m.get('sweep_dir', sweep.root)}`"
          + (f" (preset `{m['preset']}`)" if m.get("preset") else ""),
          f"- date: {m.get('date', 'unknown (no sweep.json)')}",
          f"- command: `{m.get('command', 'python -m cl_compress.report ' + str(sweep.root))}`",
          f"- machine: {m.get('machine', 'unknown')}",
          *([wall_time_line(m)] if m.get("total_seconds") else []),
          *[f"- note: {n}" for n in m.get("notes", [])],
          *tuning_lines(m.get("tuning") or {}),
          f"- finished runs: {len(sweep.runs)}; failed: {len(sweep.failed)}; incomplete: "
          f"{len(sweep.incomplete) - len(sweep.failed)}"
          + "".join(f"\n  - `{p.relative_to(sweep.root)}` **failed**: {e}" for p, e in sweep.failed.items())
          + "".join(f"\n  - `{p.relative_to(sweep.root)}` (no results.json: interrupted or running)"
                    for p in sweep.incomplete if p not in sweep.failed)]
    absent = sorted(set(registered_names()) - {r.strategy for r in sweep.runs})
    if absent:
        md.append(f"- registered strategies not in this sweep: {', '.join(f'`{a}`' for a in absent)}")
    exceptions = m.get("budget_exceptions") or {}
    summary: dict[str, Any] = {}
    for bench, groups in sweep.groups.items():
        runs = [r for rs in groups.values() for r in rs]
        diff = config_differences(runs)
        budget = budget_check(groups, exceptions)
        md += ["", f"## {bench}", "", f"Setting: {common_settings(runs)}.", "",
               f"Training budget (optimiser steps per task in training phases, from each run's "
               f"`budget`): {budget.text}.", "",
               "Config keys that differ between runs (outside `strategy`, `seed`, `logger`): "
               + (", ".join(f"`{k}` ({' / '.join(v)})" for k, v in diff.items()) if diff
                  else "none") + "."]
        if any("class_il" in r.res for r in runs):
            anchors = (m.get("anchors") or {}).get(bench) or {}
            md += ["", "### Class-IL with task inference", "",
                   "Isolation strategies train as task-IL and infer the task id at test time "
                   "(docs/task_inference.md); `avg acc` below and above is the class-IL figure "
                   "(task id inferred), the task-IL one is beside it. Anchors come from the "
                   "sweep's `sweep.json` `anchors`.", "", class_il_markdown(groups, anchors), ""]
            fig = rp.class_il_bars(groups, f"— {bench}", anchors)
            png = f"{slug(bench)}-class-il.png"
            fig.savefig(out_dir / png, dpi=100)
            md.append(f"![{bench} class-IL]({png})")
        md += ["", "Mean ± sample std over seeds; accuracies in %; sizes count everything a "
               "strategy stores to answer for all tasks (see README, Metrics); train steps/task "
               "are optimiser steps in `Trainer.fit` phases, extra steps those outside it "
               "(search, calibration); FLOPs/sample are the forward FLOPs of one test sample as "
               "the model answers a task (results.json `inference`, docs/metrics.md), the mean "
               "over tasks and the last task's, – for runs without them.", "",
               summary_markdown(groups), "", "Budget of every row (mean over seeds):", "",
               budget_table(groups), "",
               "Pareto front (no other strategy both smaller and more accurate): "
               + ", ".join(f"`{p}`" for p in pareto(groups)) + "."]
        energy, capacity = lrpet_energy_markdown(groups), capacity_markdown(groups)
        if energy:
            md += ["", "### LRPET energy transfer", "", energy]
        if capacity:
            md += ["", "### Ada-QPacknet capacity", "", capacity]
        md += ["", "### Paper claims", "", claims_markdown(groups), "", "### Figures", ""]
        figs = {"heatmaps": rp.heatmaps(groups, f"— {bench}"), "tasks": rp.task_curves(groups, f"— {bench}"),
                "tradeoff": rp.tradeoff(groups, f"— {bench}")}
        for lab, rs in groups.items():
            f = rp.per_layer(lab, rs, f"— {bench}")
            if f is not None:
                figs[f"layers-{slug(lab)}"] = f
        for name, fig in figs.items():
            png = f"{slug(bench)}-{name}.png"
            fig.savefig(out_dir / png, dpi=100)
            md.append(f"![{bench} {name}]({png})")
        summary[bench] = {"rows": summary_rows(groups), "config_differences": diff,
                          "budget": {"verdict": budget.verdict, "text": budget.text,
                                     "train_steps_per_task": budget.steps,
                                     "exceptions": budget.exceptions},
                          "claims": [c.__dict__ for c in claims(groups)],
                          "lrpet_energy": lrpet_energy_rows(groups),
                          "ada_qpacknet_capacity": capacity_rows(groups)}
    md += ["", "## Claim thresholds", "", "Every verdict above uses these rules "
           "(`cl_compress/report/claims.py`, shared with the bench scripts):", "",
           thresholds_markdown(), "",
           "## W&B", "", wandb_markdown(sweep), "",
           "Raw per-run figures: `runs.csv`; table and verdicts as JSON: `summary.json`.", ""]
    path = out_dir / "report.md"
    # a report written elsewhere (e.g. experiments/results/) names no machine path; the one
    # inside the sweep directory keeps absolute paths (its commands run as printed)
    portable = out_dir.resolve() != sweep.root.resolve()

    def keep(text: str) -> str:
        return portable_text(text, sweep.root) if portable else text

    path.write_text(keep("\n".join(md)))
    write_runs_csv(sweep, out_dir / "runs.csv")
    write_json(out_dir / "summary.json",
               json.loads(keep(json.dumps({"meta": m, "benchmarks": summary}))))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cl_compress.report", description=__doc__.split("\n")[0])
    p.add_argument("sweep", help="sweep directory (e.g. multirun/<time> or runs/compare/<name>)")
    p.add_argument("--out", help="where to write report.md and PNGs (default: the sweep directory)")
    a = p.parse_args(argv)
    try:
        path = write_report(a.sweep, a.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0




def wall_time_line(m: dict) -> str:
    """The sweep's wall time, attempt by attempt (runs done and kept in each), so the cost
    of running the whole sweep from scratch is told apart from a rerun that kept runs."""
    how = (f"launcher `{m['launcher']}`, {m.get('parallel', 1)} run(s) at a time"
           if m.get("launcher") else f"{m.get('parallel', 1)} at a time; launcher not recorded")
    attempts = [*(m.get("attempts") or []), {"total_seconds": m["total_seconds"],
                                            "progress": m.get("progress") or {}}]
    parts = []
    for i, a in enumerate(attempts, 1):
        p = a.get("progress") or {}
        ran = (p.get("done", 0) or 0) - (p.get("kept", 0) or 0)
        secs = a.get("total_seconds")
        took = f"{secs / 60:.1f} min" if isinstance(secs, int | float) else "stopped before its end"
        parts.append(f"attempt {i}: {took}, {ran} run(s) trained"
                     + (f", {p['kept']} kept from before" if p.get("kept") else ""))
    return (f"- wall time of the sweep: {'; '.join(parts)} ({how}, OMP_NUM_THREADS="
            f"{m.get('threads') or 'unset'}; exit codes {[j['rc'] for j in m.get('jobs', [])]})")


if __name__ == "__main__":
    raise SystemExit(main())
