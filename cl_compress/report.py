"""Comparison report over a sweep: ``python -m cl_compress.report <sweep dir> [--out DIR]``.

Reads every ``results.json`` (and its ``metrics.csv``) below the sweep directory, groups
the runs by benchmark and by strategy variant, and writes ``report.md`` + PNGs + ``runs.csv``:
a table per benchmark (mean ± std over seeds), accuracy-matrix heat-maps, the accuracy of
each task over the stream, accuracy versus model size, per-layer figures logged under
``compress/`` (ranks, bits, free capacity ...), and, computed from the data, whether the
central claim of each paper is supported (:mod:`cl_compress.claims`, with the training
budget of every row). Strategies appear automatically: nothing here names a column per
strategy.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import write_json
from .runs import Run, read_per_task, stat
from .status import read_status

__all__ = ["Run", "Sweep", "load_sweep", "read_per_task", "stat", "write_report"]

# (key in results.json or a derived name, header, scale, format: int decimals or "si")
COLUMNS: list[tuple[str, str, float, Any]] = [
    ("avg_acc", "avg acc %", 100, 2), ("bwt", "BWT %", 100, 2),
    ("forgetting", "forgetting %", 100, 2), ("plasticity", "plasticity %", 100, 2),
    ("compression.stored_params", "stored params", 1, "si"),
    ("compression.stored_bits", "stored bits", 1, "si"),
    ("compression.bits_per_param", "bits/param", 1, 2),
    ("compression.model_bytes", "model bytes", 1, "si"),
    ("compression.ratio_vs_individual", "× vs individual", 1, 2),
    ("budget.train_steps_per_task", "train steps/task", 1, 0),
    ("budget.extra_steps_per_task", "extra steps/task", 1, 0),
    ("train_seconds", "train s", 1, 1), ("total_seconds", "total s", 1, 1),
]
BASELINES = ("individual", "naive")


@dataclass
class Sweep:
    """Runs of a sweep grouped as ``groups[benchmark][label] -> runs`` (one per seed)."""

    root: Path
    runs: list[Run]
    incomplete: list[Path]
    meta: dict[str, Any]
    failed: dict[Path, str] = field(default_factory=dict)  # run dir -> error (status.json)

    @property
    def groups(self) -> dict[str, dict[str, list[Run]]]:
        out: dict[str, dict[str, list[Run]]] = {}
        for r in sorted(self.runs, key=lambda r: (r.bench, _order(r.label), r.res.get("seed", 0))):
            out.setdefault(r.bench, {}).setdefault(r.label, []).append(r)
        return out


def _order(label: str) -> tuple[int, str]:
    base = label.split("[")[0]
    return (BASELINES.index(base) if base in BASELINES else len(BASELINES), label)


def _default_config(strategy: str) -> dict[str, Any] | None:
    import dataclasses

    try:
        from .strategies import get_strategy

        return dataclasses.asdict(get_strategy(strategy).Config())
    except Exception:  # a strategy that is no longer importable: label by what varies
        return None


def assign_labels(runs: list[Run]) -> None:
    """Label each run by its strategy plus the hyper-parameters that make it a variant:
    keys that vary between runs of that strategy and differ from the strategy's defaults
    (e.g. ``lrpet[mode=truncate]``); runs with the default values keep the plain name."""
    by_name: dict[str, list[Run]] = {}
    for r in runs:
        by_name.setdefault(r.strategy, []).append(r)
    for name, rs in by_name.items():
        # keys every run has (a key missing from some runs means another code version, not a variant)
        keys = sorted(set.intersection(*(set(r.config) for r in rs)))
        varying = [k for k in keys if len({json.dumps(r.config[k], sort_keys=True) for r in rs}) > 1]
        ref = _default_config(name) or rs[0].config
        for r in rs:
            diff = [f"{k}={r.config.get(k)}" for k in varying if r.config.get(k) != ref.get(k)]
            r.label = f"{name}[{','.join(diff)}]" if diff else name


def load_sweep(root: str | Path) -> Sweep:
    """Every run below ``root`` (a sweep directory, or any folder of run directories)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory {root} does not exist")
    runs = []
    for p in sorted(root.rglob("results.json")):
        try:
            res = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(res, dict) and "acc_matrix" in res and "strategy" in res:
            runs.append(Run(p.parent, res, per_task=read_per_task(p.parent / "metrics.csv")))
    done = {r.path for r in runs}
    incomplete = sorted(({p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
                         | {p.parent for p in root.rglob("status.json")}) - done)
    failed = {}
    for p in incomplete:
        st = read_status(p) or {}
        if st.get("state") == "failed":
            failed[p] = str(st.get("error") or "unknown error")
    assign_labels(runs)
    meta_path = root / "sweep.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return Sweep(root, runs, incomplete, meta, failed)


def fmt_si(v: float) -> str:
    """Compact number with 3 significant digits.

    >>> [fmt_si(v) for v in (1_234_567, 249_000, 84.5, 1e9)]
    ['1.23M', '249k', '84.5', '1.00G']
    """
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if abs(v) >= div or div == 1:
            return f"{v / div:#.3g}".rstrip(".") + suffix
    return str(v)


def fmt_stat(mean: float, std: float, n: int, scale: float = 1.0, spec: Any = 2) -> str:
    """``mean ± std`` (``±`` omitted for a single run, ``–`` when missing).

    >>> fmt_stat(0.85, 0.0707, 2, 100), fmt_stat(0.9, 0.0, 1, 100), fmt_stat(0, 0, 0)
    ('85.00 ± 7.07', '90.00', '–')
    """
    if n == 0:
        return "–"
    m, s = mean * scale, std * scale
    text = fmt_si(m) if spec == "si" else f"{m:.{spec}f}"
    if n > 1:
        text += " ± " + (fmt_si(s) if spec == "si" else f"{s:.{spec}f}")
    return text


def summary_rows(groups: dict[str, list[Run]]) -> list[dict[str, Any]]:
    """One row per strategy variant: label, seeds and ``(mean, std, n)`` per column key."""
    return [{"label": label, "seeds": sorted(r.res.get("seed") for r in rs),
             **{key: stat(rs, key) for key, *_ in COLUMNS}} for label, rs in groups.items()]


def summary_markdown(groups: dict[str, list[Run]]) -> str:
    """The Markdown table of one benchmark (mean ± std over seeds)."""
    head = ["strategy", "seeds"] + [h for _, h, _, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary_rows(groups):
        cells = [f"`{row['label']}`", str(len(row["seeds"]))]
        cells += [fmt_stat(*row[key], scale, spec) for key, _, scale, spec in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CLASS_IL_COLUMNS: list[tuple[str, str, float, Any]] = [
    ("avg_acc", "class-IL acc % (task id inferred)", 100, 2),
    ("task_il.avg_acc", "task-IL acc % (task id given)", 100, 2),
    ("class_il.task_inference_avg", "task inference %", 100, 2),
    ("bwt", "class-IL BWT %", 100, 2),
    ("compression.stored_params", "stored params", 1, "si"),
    ("compression.task_inference_params", "of which task inference", 1, "si"),
    ("budget.train_steps_per_task", "train steps/task", 1, 0),
    ("budget.extra_steps_per_task", "extra steps/task", 1, 0),
    ("train_seconds", "train s", 1, 1),
]


def class_il_markdown(groups: dict[str, list[Run]], anchors: dict[str, float] | None = None) -> str:
    """The class-IL table of a class-incremental benchmark: the accuracy with the task id
    inferred (``acc_matrix``; naive: its shared head), with the task id given and the
    task-inference accuracy, beside the ``anchors`` (e.g. Avalanche Replay-200), in %."""
    head = ["strategy", "seeds", "score / negatives"] + [h for _, h, _, _ in CLASS_IL_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, rs in groups.items():
        ci = rs[0].res.get("class_il") or {}
        how = f"{ci['score']} / {ci['negatives']}" + (" + refit" if ci.get("refit_old_heads")
                                                      else "") if ci else "shared head"
        cells = [f"`{label}`", str(len(rs)), how]
        for key, _, scale, spec in CLASS_IL_COLUMNS:
            v = stat(rs, key)
            if key == "compression.task_inference_params" and v[2] == 0 and ci:
                v = (0.0, 0.0, len(rs))
            cells.append(fmt_stat(*v, scale, spec))
        lines.append("| " + " | ".join(cells) + " |")
    for name, v in (anchors or {}).items():
        lines.append(f"| {name} | | anchor | {100 * v:.2f} |" + " |" * (len(head) - 4))
    return "\n".join(lines)


def write_runs_csv(sweep: Sweep, path: Path) -> None:
    """Every run's headline figures, one row per run (the table's raw data)."""
    keys = [k for k, *_ in COLUMNS]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["benchmark", "label", "strategy", "seed", *keys, "run_dir"])
        for r in sorted(sweep.runs, key=lambda r: (r.bench, r.label, r.res.get("seed", 0))):
            w.writerow([r.bench, r.label, r.strategy, r.res.get("seed"),
                        *[r.get(k) for k in keys], str(r.path.relative_to(sweep.root))])


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def wandb_markdown(sweep: Sweep) -> str:
    """How to find the sweep's runs in W&B and upload offline ones."""
    loggers = [(r.res.get("config") or {}).get("logger") or {} for r in sweep.runs]
    groups = sorted({str(lg.get("group")) for lg in loggers})
    offline = sorted(sweep.root.rglob("wandb/offline-run-*"))
    on = any(lg.get("wandb") and lg.get("mode") != "disabled" for lg in loggers)
    lines = [("Runs of this sweep" if on else "W&B was off for this sweep (`logger=none`); with the "
              "default logger, runs") + f" share the W&B group {' / '.join(f'`{g}`' for g in groups)} "
             "and are tagged with strategy, benchmark, scenario and seed (also in their config), so "
             "a W&B dashboard compares them without set-up: filter by the group and group runs by "
             "`method` (`strategy.name` would pool a strategy with its variants)."]
    if offline:
        lines.append(f"{len(offline)} run(s) were logged offline; upload them with\n\n```bash\n"
                     f"find {sweep.root} -type d -name 'offline-run-*' -exec wandb sync {{}} +\n```")
    else:
        lines.append("No offline W&B run directory was found below the sweep directory.")
    return "\n\n".join(lines)


def tuning_lines(tuning: dict[str, Any]) -> list[str]:
    """Report lines for a preset written by ``cl_compress.tune``: trials per tuned strategy,
    and whether every tuned strategy had the same number.

    >>> tuning_lines({"a": {"trials": 6, "study": "s"}, "b": {"trials": 6, "study": "t"}})[-1]
    '- every tuned strategy had the same number of trials (6)'
    """
    if not tuning:
        return []
    lines = [f"- tuned on a validation split held out of the training data: `{k}` "
             f"{v.get('trials')} trials (Optuna study `{v.get('study')}`, objective "
             f"{v.get('objective', 'avg_acc')})" for k, v in sorted(tuning.items())]
    counts = sorted({v.get("trials") for v in tuning.values()}, key=str)
    lines.append(f"- every tuned strategy had the same number of trials ({counts[0]})" if len(counts) == 1
                 else f"- **unequal tuning**: trials per strategy {counts}")
    return lines


def portable_text(text: str, root: str | Path) -> str:
    """``text`` with this machine's absolute paths made relative: the sweep directory
    ``root`` relative to the working directory (or its name when outside it) and the
    working directory itself dropped, so a committed report names no machine path.

    >>> import os
    >>> portable_text(f"cd {os.getcwd()}/runs/x && ls", "runs/x")
    'cd runs/x && ls'
    """
    import os

    cwd = os.getcwd()
    root_abs = os.path.abspath(root)
    rel = os.path.relpath(root_abs, cwd) if root_abs.startswith(cwd + os.sep) else Path(root_abs).name
    return text.replace(root_abs, rel).replace(cwd + os.sep, "")


def write_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.md``, its PNGs, ``runs.csv`` and ``summary.json``; returns report.md."""
    from . import report_plots as rp
    from .report_claims import (
        budget_check,
        budget_table,
        claims,
        claims_markdown,
        common_settings,
        config_differences,
        pareto,
        thresholds_markdown,
    )
    from .strategies import builtin_names

    sweep = load_sweep(sweep_dir)
    if not sweep.runs:
        raise ValueError(f"no finished run (results.json) below {sweep.root}")
    out_dir = Path(out) if out else sweep.root
    out_dir.mkdir(parents=True, exist_ok=True)
    m = sweep.meta
    md = ["# Strategy comparison", "",
          f"- sweep: `{m.get('sweep_dir', sweep.root)}`"
          + (f" (preset `{m['preset']}`)" if m.get("preset") else ""),
          f"- date: {m.get('date', 'unknown (no sweep.json)')}",
          f"- command: `{m.get('command', 'python -m cl_compress.report ' + str(sweep.root))}`",
          f"- machine: {m.get('machine', 'unknown')}",
          *([f"- wall time of the sweep: {m['total_seconds'] / 60:.1f} min over {len(m['jobs'])} "
             + (f"multirun(s), launcher `{m['launcher']}`, {m.get('parallel', 1)} run(s) at a time"
                if m.get("launcher") else f"multirun(s) ({m.get('parallel', 1)} at a time; launcher "
                "not recorded: a sweep from before launchers)")
             + f", OMP_NUM_THREADS={m.get('threads') or 'unset'} (exit codes "
             f"{[j['rc'] for j in m['jobs']]})"
             + (f"; attempt {len(m['attempts']) + 1} of this sweep directory (finished runs of "
                "earlier attempts kept)" if m.get("attempts") else "")]
            if m.get("total_seconds") else []),
          *[f"- note: {n}" for n in m.get("notes", [])],
          *tuning_lines(m.get("tuning") or {}),
          f"- finished runs: {len(sweep.runs)}; failed: {len(sweep.failed)}; incomplete: "
          f"{len(sweep.incomplete) - len(sweep.failed)}"
          + "".join(f"\n  - `{p.relative_to(sweep.root)}` **failed**: {e}" for p, e in sweep.failed.items())
          + "".join(f"\n  - `{p.relative_to(sweep.root)}` (no results.json: interrupted or running)"
                    for p in sweep.incomplete if p not in sweep.failed)]
    absent = sorted(set(builtin_names()) - {r.strategy for r in sweep.runs})
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
               "(search, calibration).", "",
               summary_markdown(groups), "", "Budget of every row (mean over seeds):", "",
               budget_table(groups), "",
               "Pareto front (no other strategy both smaller and more accurate): "
               + ", ".join(f"`{p}`" for p in pareto(groups)) + ".", "", "### Paper claims", "",
               claims_markdown(groups), "", "### Figures", ""]
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
                          "claims": [c.__dict__ for c in claims(groups)]}
    md += ["", "## Claim thresholds", "", "Every verdict above uses these rules "
           "(`cl_compress/claims.py`, shared with the bench scripts):", "",
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


if __name__ == "__main__":
    raise SystemExit(main())
