"""A W&B dashboard for a sweep's group, written as a file, and the sweep's report on W&B.

    python -m cl_compress.tracking.dashboard <sweep_dir | sweep.json> [--out FILE]
        [--project P] [--entity E] [--apply] [--log-report]

writes ``dashboard.json`` (beside ``sweep.json`` by default): a report and a workspace in the
structure of W&B's ``wandb-workspaces`` package (``wandb_workspaces.reports.v2.Report`` and
``wandb_workspaces.workspaces.Workspace``: blocks, panel grids, runsets filtered to the
sweep's group, line plots, scatter plots, the runs table's columns):

* accuracy, forgetting and BWT curves (x = ``task``, one line per method, seeds averaged);
* one overlay panel per task ``j``: ``eval/acc/task_j`` after each task, every method;
* class-IL sweeps: the same with the task id given (``eval/task_il/*``);
* size vs accuracy: ``final/compress/ratio_vs_individual`` against ``final/avg_acc``;
* the runs table with the budget columns (steps per task, optimiser steps, epochs, samples).

``--apply`` builds the report and workspace with ``wandb-workspaces`` and saves them to W&B
(needs the package, ``pip install wandb[workspaces]``, and a login); without it the file is
the deliverable. ``--log-report`` logs the sweep's ``report.md`` and figures as a
``report`` artifact of a summary run in the same group (offline unless ``WANDB_MODE`` says
otherwise), so the Markdown report reaches W&B beside the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

FORMAT = "cl_compress.dashboard/1"
BUDGET_COLUMNS = ["config.train.steps_per_task", "budget/train_steps", "budget/train_epochs",
                  "budget/samples_seen"]
RESULT_COLUMNS = ["final/avg_acc", "final/forgetting", "final/bwt",
                  "final/compress/ratio_vs_individual", "final/compress/stored_bits"]


def _sweep_meta(path: Path) -> tuple[Path, dict[str, Any]]:
    file = path / "sweep.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no sweep.json at {file}: give a sweep directory (python -m "
                                f"cl_compress.launch.sweep writes it) or its sweep.json")
    return file.parent, json.loads(file.read_text())


def _n_tasks(sweep_dir: Path, benchmarks: list[str]) -> int:
    """Tasks of the sweep's longest stream: from its runs' results.json, else the
    benchmarks' default task counts."""
    found = []
    for p in sweep_dir.rglob("results.json"):
        try:
            found.append(int(json.loads(p.read_text())["n_tasks"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if found:
        return max(found)
    from cl_compress.settings import BENCHMARKS

    return max((BENCHMARKS[b][1] for b in benchmarks if b in BENCHMARKS), default=5)


def _line(title: str, y: list[str], x: str = "task") -> dict[str, Any]:
    return {"type": "LinePlot", "title": title, "x": x, "y": y, "groupby": "config.method",
            "groupby_aggfunc": "mean", "groupby_rangefunc": "stderr", "smoothing_factor": 0.0}


def definition(meta: dict[str, Any], n_tasks: int, project: str = "cl_compress",
               entity: str | None = None, scenario: str | None = None) -> dict[str, Any]:
    """The dashboard of a sweep (``meta``: its sweep.json) as plain data."""
    group = meta.get("name") or meta.get("sweep_dir")
    if not group:
        raise ValueError("sweep.json has no name: its W&B group is unknown")
    scenario = scenario or ("class" if "class" in str(meta.get("command", "")) else "task")
    headline = "class-IL" if scenario == "class" else "task-IL"
    curves = [_line(f"average accuracy over seen tasks ({headline})", ["eval/acc/avg_seen"]),
              _line(f"forgetting ({headline}, max-based)", ["stream/forgetting"]),
              _line(f"backward transfer ({headline})", ["stream/bwt"])]
    overlays = [_line(f"task {j}: accuracy after each task ({headline})", [f"eval/acc/task_{j}"])
                for j in range(n_tasks)]
    sections = [{"name": "accuracy and forgetting", "panels": curves},
                {"name": "per-task accuracy", "panels": overlays}]
    if scenario == "class":
        sections.append({"name": "task-IL (task id given)", "panels": [
            _line("average accuracy, task id given", ["eval/task_il/avg_seen"]),
            _line("forgetting, task id given", ["stream/task_il/forgetting"]),
            *[_line(f"task {j}: task id given", [f"eval/task_il/acc/task_{j}"])
              for j in range(n_tasks)]]})
    scatter = {"type": "ScatterPlot", "title": "size vs accuracy",
               "x": "final/compress/ratio_vs_individual", "y": "final/avg_acc",
               "groupby": "config.method"}
    sections.append({"name": "size vs accuracy", "panels": [scatter]})
    table = {"type": "RunComparer", "title": "runs", "columns":
             ["config.method", "config.benchmark.name", "config.seed", *BUDGET_COLUMNS,
              *RESULT_COLUMNS]}
    sections.append({"name": "runs", "panels": [table]})
    runset = {"name": group, "entity": entity, "project": project,
              "filters": [{"key": "group", "op": "==", "value": group}],
              "groupby": ["config.method"], "columns": table["columns"]}
    report = {"title": f"{group}: strategies compared",
              "description": str(meta.get("description") or "")[:500],
              "blocks": [{"type": "H1", "text": f"{group}: strategies compared"},
                         {"type": "P", "text": f"budget: {meta.get('budget', '?')}; seeds "
                                               f"{meta.get('seeds', '?')}; command: "
                                               f"{meta.get('command', '?')}"},
                         *[{"type": "PanelGrid", "title": s["name"], "runsets": [runset],
                            "panels": s["panels"]} for s in sections]]}
    workspace = {"name": f"{group} workspace", "runset_settings": runset, "sections": sections}
    return {"format": FORMAT, "group": group, "project": project, "entity": entity,
            "scenario": scenario, "n_tasks": n_tasks, "report": report, "workspace": workspace,
            "apply": "python -m cl_compress.tracking.dashboard <sweep> --apply "
                     "(needs `pip install wandb[workspaces]` and a W&B login)"}


def check(defn: dict[str, Any]) -> list[str]:
    """Problems of a definition (empty: every panel names a key the runs log, every runset
    is filtered to the group): what the offline test checks."""
    from cl_compress.tracking import keys as k

    problems = []
    known_prefixes = (f"{k.ACC}/", "stream/", "eval/task_il/", "final/", "budget/", "config.")
    for section in defn["workspace"]["sections"]:
        for panel in section["panels"]:
            y = panel.get("y", [])
            for key in [*(y if isinstance(y, list) else [y]), *[panel.get("x")] * ("x" in panel),
                        *panel.get("columns", [])]:
                if key != "task" and not key.startswith(known_prefixes):
                    problems.append(f"{section['name']}: unknown key {key}")
    rs = defn["workspace"]["runset_settings"]
    if {"key": "group", "op": "==", "value": defn["group"]} not in rs["filters"]:
        problems.append("runset not filtered to the group")
    return problems


def apply(defn: dict[str, Any]) -> list[str]:  # pragma: no cover - needs wandb-workspaces + login
    """Save the report and workspace to W&B with ``wandb-workspaces``; returns their URLs."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def panel(p: dict[str, Any]):
        if p["type"] == "LinePlot":
            return wr.LinePlot(title=p["title"], x=p["x"], y=p["y"], groupby=p["groupby"],
                               groupby_aggfunc=p["groupby_aggfunc"],
                               groupby_rangefunc=p["groupby_rangefunc"],
                               smoothing_factor=p["smoothing_factor"])
        if p["type"] == "ScatterPlot":
            return wr.ScatterPlot(title=p["title"], x=p["x"], y=p["y"])
        return wr.RunComparer()

    rs = defn["workspace"]["runset_settings"]
    runset = wr.Runset(entity=rs["entity"] or "", project=rs["project"], name=rs["name"],
                       filters=f"Metric('group') == '{defn['group']}'")
    blocks: list[Any] = []
    for b in defn["report"]["blocks"]:
        if b["type"] == "H1":
            blocks.append(wr.H1(b["text"]))
        elif b["type"] == "P":
            blocks.append(wr.P(b["text"]))
        else:
            blocks += [wr.H2(b["title"]),
                       wr.PanelGrid(runsets=[runset], panels=[panel(p) for p in b["panels"]])]
    report = wr.Report(project=defn["project"], entity=defn["entity"] or "",
                       title=defn["report"]["title"], description=defn["report"]["description"],
                       blocks=blocks).save()
    workspace = ws.Workspace(entity=defn["entity"] or "", project=defn["project"],
                             name=defn["workspace"]["name"],
                             sections=[ws.Section(name=s["name"], panels=[panel(p) for p in s["panels"]])
                                       for s in defn["workspace"]["sections"]]).save()
    return [report.url, workspace.url]


def log_report(sweep_dir: Path, group: str, project: str = "cl_compress",
               entity: str | None = None) -> Path | None:
    """Log ``report.md`` and its PNGs as a ``report`` artifact of a summary run of ``group``
    (job type ``report``); returns the run's offline folder (None online)."""
    import wandb

    files = [sweep_dir / "report.md", *sorted(sweep_dir.glob("*.png"))]
    if not files[0].is_file():
        raise FileNotFoundError(f"no report.md in {sweep_dir}: python -m cl_compress.report "
                                f"{sweep_dir} writes it")
    from cl_compress.tracking import TrackerSettings, _wandb_settings

    run = wandb.init(project=project, entity=entity, group=group, name=f"{group}-report",
                     job_type="report", dir=str(sweep_dir), settings=_wandb_settings(TrackerSettings()),
                     mode="online" if os.environ.get("WANDB_MODE") == "online" else "offline")
    try:
        art = wandb.Artifact(f"report-{group}".replace("/", "-"), type="report",
                             description=f"report.md and figures of sweep {group}")
        for f in files:
            if f.is_file():
                art.add_file(str(f), name=f.name)
        run.log_artifact(art)
        run.log({f"report/{f.stem}": wandb.Image(str(f)) for f in files[1:]})
        offline = Path(run.dir).parent if run.settings.mode in ("offline", "dryrun") else None
    finally:
        run.finish()
    return offline


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cl_compress.tracking.dashboard",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", help="sweep directory or its sweep.json")
    p.add_argument("--out", help="file to write (default: dashboard.json beside sweep.json)")
    p.add_argument("--project", default="cl_compress")
    p.add_argument("--entity")
    p.add_argument("--scenario", choices=["task", "class"], help="default: from the sweep command")
    p.add_argument("--apply", action="store_true", help="save to W&B with wandb-workspaces")
    p.add_argument("--log-report", action="store_true",
                   help="log report.md and figures as an artifact of a summary run")
    a = p.parse_args(argv)
    try:
        sweep_dir, meta = _sweep_meta(Path(a.sweep))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    defn = definition(meta, _n_tasks(sweep_dir, list(meta.get("benchmarks") or [])),
                      a.project, a.entity, a.scenario)
    problems = check(defn)
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 1
    from cl_compress.rundir.io import write_json

    out = Path(a.out) if a.out else sweep_dir / "dashboard.json"
    write_json(out, defn)
    n = sum(len(s["panels"]) for s in defn["workspace"]["sections"])
    print(f"dashboard: {out} ({len(defn['workspace']['sections'])} sections, {n} panels, group "
          f"{defn['group']!r})")
    if a.apply:
        try:
            import wandb_workspaces  # noqa: F401
        except ImportError:
            print("error: --apply needs wandb-workspaces (pip install wandb[workspaces]); the "
                  f"definition is in {out}", file=sys.stderr)
            return 2
        for url in apply(defn):
            print(f"saved: {url}")
    if a.log_report:
        where = log_report(sweep_dir, defn["group"], a.project, a.entity)
        print(f"report artifact: {'wandb sync ' + str(where) if where else 'uploaded'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
