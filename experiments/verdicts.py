"""Each paper's verdict under the common protocol and under its authors' recipe, side by side
(issue 24), read from the committed comparison reports; nothing is trained here.

* **common protocol**: ``experiments/results/compare-protocol-round3`` (split_fmnist, the
  current claim checks) and ``experiments/results/compare-protocol`` (both streams, the checks
  before round 3), each shown where present (``make compare-protocol``: Adam 1e-3 at constant
  lr, batch 128, 1500 steps per task for every strategy);
* **authors' recipe and rules**: ``experiments/results/recipe-<paper>`` (``make compare
  PRESET=recipe_<paper>``: the authors' optimiser, schedule, batch and strategy rules).

Each verdict is the one the sweep's report computed with the registered claim check
(``cl_compress.report.papers``) and stored in that folder's ``summary.json``; the optimiser
column is read from the sweep's preset and the steps column from the report's budget. A
paper whose recipe folder is missing, or whose claim is absent from it, is printed as
``not run``: never filled in from elsewhere.

Usage: python -m experiments.verdicts [--results experiments/results] [--out PATH]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from experiments import harness

PRESETS = Path(__file__).resolve().parents[1] / "cl_compress" / "launch" / "presets"
PROTOCOL = "compare-protocol"
# the common protocol's report folders, newest first, with what the regime column says of each:
# the round-3 rerun (split_fmnist, the current claim checks) and the first full protocol run
PROTOCOLS = {"compare-protocol-round3": "common protocol",
             PROTOCOL: "common protocol, first run (code and checks before round 3)"}


def recipe_folder(paper: str) -> str:
    """``recipe_<paper>`` preset's report folder name (``recipe-ada-qpacknet`` ...)."""
    return "recipe-" + paper.replace("_", "-")


def train_overrides(folder: Path, preset: str) -> tuple[dict[str, str], str]:
    """The ``train.*`` overrides the sweep in ``folder`` ran with (its sweep.json jobs), else
    those of the preset as it is now; and where they were read from."""
    sweep = folder / "sweep.json"
    if sweep.is_file():
        args = [a for job in json.loads(sweep.read_text()).get("jobs", []) for a in job.get("args", [])]
        ov = dict(a.split("=", 1) for a in args if a.startswith("train.") and "=" in a)
        if ov:
            return ov, "sweep.json"
    path = PRESETS / f"{preset}.yaml"
    if not path.is_file():
        return {}, "no sweep.json, no preset file"
    data = yaml.safe_load(path.read_text()).get("overrides", [])
    return dict(str(o).split("=", 1) for o in data if str(o).startswith("train.")), "preset"


def optimiser(ov: dict[str, str]) -> str:
    """The optimiser recipe of ``train.*`` overrides (the training defaults where unset)."""
    from cl_compress.settings import TrainSettings

    d = TrainSettings()

    def get(key: str, default: Any) -> str:
        return str(ov.get(f"train.{key}", default)).split()[0]

    opt, sched = get("optimizer", d.optimizer), get("scheduler", d.scheduler)
    momentum = f" momentum {get('momentum', d.momentum)}" if opt == "sgd" else ""
    text = (f"{opt} lr {get('lr', d.lr)}{momentum}"
            f", wd {get('weight_decay', d.weight_decay)}, batch {get('batch_size', d.batch_size)}, "
            f"scheduler {sched}")
    return text + (f" {get('milestones', d.milestones)}" if sched not in ("none", "None") else "")


def steps_text(steps: dict[str, Any]) -> str:
    """Train steps per task of every label (lists per task): one figure when all agree."""
    per = {k: sorted({round(x) for x in v}) for k, v in steps.items() if isinstance(v, list) and v}
    if not per:
        return "-"

    def fmt(xs: list[int]) -> str:
        return str(xs[0]) if len(xs) == 1 else f"{xs[0]}-{xs[-1]}"

    if len({tuple(x) for x in per.values()}) == 1:
        return f"{fmt(next(iter(per.values())))} for all {len(per)} strategies and variants"
    return ", ".join(f"`{k}` {fmt(v)}" for k, v in per.items())


def load(folder: Path) -> dict[str, Any] | None:
    """A report folder's summary.json, or None when there is none."""
    f = folder / "summary.json"
    return json.loads(f.read_text()) if f.is_file() else None


def rows_of(folder: Path, label: str, regime: str) -> list[str]:
    """One table row per benchmark of ``folder``'s summary on which paper ``label`` was judged."""
    summary = load(folder)
    if summary is None:
        return [f"| {label} | {regime} | - | - | - | **not run** | no `{folder.name}/summary.json` |"]
    preset = summary.get("meta", {}).get("preset") or "?"
    ov, source = train_overrides(folder, preset)
    out = []
    for bench, b in sorted(summary.get("benchmarks", {}).items()):
        for c in b.get("claims") or []:
            if not str(c.get("paper", "")).startswith(label):
                continue
            st = steps_text((b.get("budget") or {}).get("train_steps_per_task") or {})
            out.append(f"| {c['paper']} | {regime} (`{preset}`) | {bench} | {optimiser(ov)} "
                       f"({source}) | {st} | **{c['verdict']}** | {c['evidence']} |")
    return out or [f"| {label} | {regime} (`{preset}`) | - | - | - | **not run** | "
                   f"`{folder.name}` has no {label} claim |"]


def table(results: Path) -> list[str]:
    from cl_compress.report.claims import registered

    lines = ["| paper | regime (preset) | benchmark | optimiser (the sweep's, else the preset's) "
             "| train steps/task | verdict | evidence (the report's claim check) |",
             "|---|---|---|---|---|---|---|"]
    protocols = {f: what for f, what in PROTOCOLS.items() if (results / f).is_dir()} or \
        {PROTOCOL: PROTOCOLS[PROTOCOL]}
    for chk in registered():
        for folder, what in protocols.items():
            lines += rows_of(results / folder, chk.label, what)
        lines += rows_of(results / recipe_folder(chk.strategy), chk.label, "authors' recipe")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser("experiments.verdicts", __doc__, "verdicts-<date>.md")
    ap.add_argument("--results", default=str(harness.RESULTS), help="folder of the report folders")
    args = ap.parse_args(argv)
    results = Path(args.results)
    dates = {}
    for name in [*PROTOCOLS, *(recipe_folder(c) for c in ("packnet", "ada_qpacknet", "lrpet", "cacl"))]:
        s = results / name / "sweep.json"
        if s.is_file():
            dates[name] = json.loads(s.read_text()).get("date", "?")
    text = harness.header(
        "Each paper's verdict: common protocol and authors' recipe", "experiments.verdicts", argv,
        "read from the committed reports' summary.json (no training here); sweep dates: "
        + (", ".join(f"{k} {v}" for k, v in dates.items()) or "none found"),
        "the verdicts are the report's claim checks (`cl_compress/report/papers/`); each can come "
        "out either way (tests/test_report.py plants failing cases)") + "\n".join(table(results))
    print(text)
    harness.write_results(text, args.out, f"verdicts-{harness.today()}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
