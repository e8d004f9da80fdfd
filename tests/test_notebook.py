"""End to end: a real tiny sweep (Hydra multirun + report), then the comparison notebook
executed on it with this interpreter's kernel."""

import json
import sys
from pathlib import Path

import nbformat
import pytest

from cl_compress import sweep

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_strategies.ipynb"
KERNEL = "cl_compress_test"


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """naive + individual, seeds 0 and 1, one epoch on the synthetic stream: one multirun."""
    root = tmp_path_factory.mktemp("sweep") / "tiny"
    rc = sweep.main(["--benchmarks", "synthetic", "--strategies", "naive individual",
                     "--seeds", "0 1", "--dir", str(root), "logger=none", "train.epochs=1",
                     "train.batch_size=32"])
    assert rc == 0
    return root


def test_sweep_runs_every_job_into_one_group(tiny_sweep):
    meta = json.loads((tiny_sweep / "sweep.json").read_text())
    assert [j["rc"] for j in meta["jobs"]] == [0]
    results = sorted(tiny_sweep.glob("synthetic-task/*/s*/results.json"))
    assert len(results) == 4
    for p in results:
        res = json.loads(p.read_text())
        assert res["config"]["logger"]["group"] == "tiny" and res["config"]["train"]["epochs"] == 1
        assert p.parent.name == f"s{res['seed']}" and p.parent.parent.name == res["strategy"]
    text = (tiny_sweep / "report.md").read_text()
    assert "| `individual` | 2 |" in text and "| `naive` | 2 |" in text
    assert (tiny_sweep / "synthetic-task-tradeoff.png").stat().st_size > 5000


def test_notebook_outputs_are_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


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
    assert "4 finished runs" in text and "`naive`" in text and "`individual`" in text
    assert "not measured" in text  # the compression strategies are absent from this sweep
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # heat-maps, task curves, accuracy vs size
