"""results.json ``footprint``: one entry per task with stored size, strategy state,
checkpoint size and the newest task's inference cost (cl_compress.engine.footprint), and the
growth each method claims: one model a task for ``individual``, a fixed body plus small per-task
state for PackNet."""

import pytest
import torch

from cl_compress.engine.footprint import tensor_bytes
from cl_compress.testing import run_quick

SMALL = ["benchmark.n_tasks=4", "model.hidden=[32]", "train.epochs=null", "train.steps_per_task=3"]
KEYS = {"task", "stored_params", "stored_bits", "strategy_state_bytes", "checkpoint_bytes",
        "checkpoint_file_bytes", "flops_task", "nonzero_task"}


def _deltas(fp, key):
    return [b[key] - a[key] for a, b in zip(fp, fp[1:])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("footprint")
    return {n: run_quick(root / n, [f"strategy={n}", *SMALL]) for n in ("individual", "packnet")}


def test_every_task_has_its_footprint(runs):
    for name, res in runs.items():
        fp = res["footprint"]
        assert [e["task"] for e in fp] == [0, 1, 2, 3], name
        assert all(KEYS <= set(e) for e in fp), (name, fp[0])
        assert all(e["flops_task"] > 0 and e["checkpoint_file_bytes"] > e["checkpoint_bytes"] > 0
                   for e in fp), fp
        # the last entry is what the final compression block counts
        assert fp[-1]["stored_bits"] == res["compression"]["stored_bits"], name
        assert fp[-1]["flops_task"] == res["inference"]["flops_per_task"][-1], name


def test_growth_is_what_each_method_says(runs):
    ind, pn = runs["individual"]["footprint"], runs["packnet"]["footprint"]
    one_model = ind[0]["stored_params"]
    # individual: exactly one more model (same architecture) per task
    assert _deltas(ind, "stored_params") == [one_model] * 3, ind
    assert all(d > 0 for d in _deltas(ind, "checkpoint_bytes")), ind
    # PackNet: one body for all tasks; a task claims its share of the free weights (stored
    # params grow) plus its head and mask bits, always less than a whole model, and the
    # stored params never exceed one body plus the seen tasks' heads
    head = 2 * (32 + 1)  # 2 classes on 32 features
    assert all(0 < d < ind[0]["stored_bits"] for d in _deltas(pn, "stored_bits")), pn
    assert all(e["stored_params"] <= one_model - head + (t + 1) * head for t, e in enumerate(pn)), pn
    assert pn[-1]["stored_bits"] < 0.75 * ind[-1]["stored_bits"]


def test_tensor_bytes_counts_shared_storage_once():
    a = torch.zeros(10)
    assert tensor_bytes({"x": a, "y": [a, a[:5]]}, a) == 40
    assert tensor_bytes({"x": torch.zeros(3, dtype=torch.int8), "y": torch.zeros(2)}) == 3 + 8
