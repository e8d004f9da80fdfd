"""End to end: a real tiny sweep (one Hydra multirun with a variant, then the report), and the
comparison notebook executed on it with this interpreter's kernel."""

import json
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from cl_compress.launch import sweep

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_strategies.ipynb"
KERNEL = "cl_compress_test"


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """naive, lrpet and the lrpet-truncate variant, seeds 0 and 1, one epoch on the synthetic
    stream: one Hydra multirun of 6 runs, then the report."""
    root = tmp_path_factory.mktemp("sweep")
    preset = root / "tiny.yaml"
    preset.write_text(yaml.safe_dump({
        "description": "test", "target": "test", "benchmarks": ["synthetic"],
        "strategies": ["naive", "lrpet"], "seeds": [0, 1],
        "overrides": ["logger=none", "train.steps_per_task=12", "train.batch_size=32"],
        "variants": {"lrpet-truncate": {"strategy": "lrpet", "overrides": ["strategy.mode=truncate"]}},
    }))
    assert sweep.main(["--preset", str(preset), "--dir", str(root / "tiny")]) == 0
    return root / "tiny"


@pytest.mark.slow  # 14 s: a real sweep (with the notebook test, -m slow)
def test_sweep_runs_every_job_into_one_group(tiny_sweep):
    meta = json.loads((tiny_sweep / "sweep.json").read_text())
    assert [j["rc"] for j in meta["jobs"]] == [0]  # one multirun
    results = sorted(tiny_sweep.glob("synthetic-task/*/s*/results.json"))
    assert len(results) == 6
    for p in results:
        res = json.loads(p.read_text())
        assert res["config"]["logger"]["group"] == "tiny" and res["config"]["train"]["steps_per_task"] == 12
        assert p.parent.name == f"s{res['seed']}"
        truncate = p.parent.parent.name == "lrpet-truncate"
        assert res["strategy"] == ("lrpet" if truncate else p.parent.parent.name)
        if res["strategy"] == "lrpet":
            assert res["strategy_config"]["mode"] == ("truncate" if truncate else "lrpet")
    text = (tiny_sweep / "report.md").read_text()
    for label in ("naive", "lrpet", "lrpet[mode=truncate]"):
        assert f"| `{label}` | 2 |" in text
    assert "**not measured**" in text  # packnet, ada_qpacknet and cacl are absent
    assert (tiny_sweep / "synthetic-task-tradeoff.png").stat().st_size > 5000


def test_notebook_outputs_are_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow  # 14 s: a sweep then the notebook
def test_notebook_executes_on_a_sweep(tiny_sweep, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # a kernelspec for this interpreter, found first through JUPYTER_PATH (works in a fresh
    # clone's .venv and ignores whatever python3 kernel the user has installed)
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cl_compress test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CLC_SWEEP", str(tiny_sweep))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name=KERNEL,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + json.dumps(o.get("data", {})) for o in outputs)
    assert "6 finished runs" in text and "`naive`" in text and "`lrpet[mode=truncate]`" in text
    assert "not measured" in text  # the compression strategies are absent from this sweep
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # heat-maps, task curves, accuracy vs size


@pytest.mark.slow
def test_notebook_on_a_fresh_clone_says_what_to_run_first(tmp_path, monkeypatch):
    """No sweep yet: the first code cell stops "Run All" with one line naming the command,
    not a traceback."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cl_compress test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CLC_SWEEP", str(tmp_path / "no_sweep_yet"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.raises(CellExecutionError):
        NotebookClient(nb, timeout=300, kernel_name=KERNEL,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "RunThisFirst"
    assert errors[0].traceback == [errors[0].evalue] and "make compare-cpu" in errors[0].evalue
