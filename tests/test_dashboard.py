"""The shipped W&B dashboard definition, checked offline: every panel plots a key the runs
log, per-task overlays for every task, the size/accuracy scatter, budget columns."""

import json

import pytest

from cl_compress.tracking import keys
from cl_compress.tracking.dashboard import BUDGET_COLUMNS, check, definition, main


def _logged_keys(scenario: str, T: int) -> set[str]:
    R = [[0.9] * (i + 1) for i in range(T)]
    v = keys.views(scenario, R, masked_task_il=R if scenario == "class" else None)
    return {k for t in range(T) for k in keys.accuracy_metrics(v, t)}


@pytest.mark.parametrize("scenario", ["task", "class"])
def test_definition_plots_only_logged_keys(scenario):
    T = 5
    meta = {"name": "g1", "budget": "1000 steps/task", "seeds": [0, 1], "command": "x"}
    d = definition(meta, T, scenario=scenario)
    assert check(d) == []
    logged = _logged_keys(scenario, T)
    panels = [p for s in d["workspace"]["sections"] for p in s["panels"]]
    lines = [p for p in panels if p["type"] == "LinePlot"]
    for p in lines:
        assert p["x"] == "task" and set(p["y"]) <= logged, p
        assert p["groupby"] == "config.method"  # one line per method, seeds averaged
    plotted = {k for p in lines for k in p["y"]}
    assert {f"eval/acc/task_{j}" for j in range(T)} <= plotted
    assert {"eval/acc/avg_seen", "stream/forgetting"} <= plotted
    assert ({f"eval/task_il/acc/task_{j}" for j in range(T)} <= plotted) == (scenario == "class")
    scatter = [p for p in panels if p["type"] == "ScatterPlot"]
    assert scatter and scatter[0]["y"] == "final/avg_acc"
    table = [p for p in panels if p["type"] == "RunComparer"][0]
    assert set(BUDGET_COLUMNS) <= set(table["columns"])
    assert d["workspace"]["runset_settings"]["filters"] == [{"key": "group", "op": "==", "value": "g1"}]
    grids = [b for b in d["report"]["blocks"] if b["type"] == "PanelGrid"]
    assert [g["title"] for g in grids] == [s["name"] for s in d["workspace"]["sections"]]


def test_command_writes_the_file(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "s", "benchmarks": ["split_mnist"]}))
    assert main([str(tmp_path)]) == 0
    d = json.loads((tmp_path / "dashboard.json").read_text())
    assert d["group"] == "s" and d["n_tasks"] == 5 and check(d) == []
    assert main([str(tmp_path / "nope")]) == 2


@pytest.mark.slow
def test_report_reaches_wandb_as_an_artifact(tmp_path, monkeypatch):
    from cl_compress.tracking.dashboard import log_report
    from cl_compress.tracking.offline import read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "report.md").write_text("# report\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([0, 1])
    plt.savefig(tmp_path / "fig.png")
    plt.close()
    folder = log_report(tmp_path, "g1")
    run = read_run(folder, wait=60)
    assert run.group == "g1" and run.name == "g1-report"
    arts = [a for a in run.artifacts if a["type"] == "report"]
    assert arts and sorted(arts[0]["files"]) == ["fig.png", "report.md"]
