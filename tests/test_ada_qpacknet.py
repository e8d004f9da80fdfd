"""Ada-QPacknet: searches, exact freezing, stored == evaluated, artifact reload in a new process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cl_compress.compress import masks, quant
from cl_compress.errors import ConfigError
from cl_compress.io import load_torch
from cl_compress.models import ContinualModel
from cl_compress.models.backbones import mlp
from cl_compress.strategies import StreamInfo, TaskData, TrainSettings, get_strategy
from cl_compress.testing import QUICK, run_quick

REPO = Path(__file__).resolve().parents[1]
FAST = ["strategy=ada_qpacknet", "strategy.population=2", "strategy.search_epochs=1"]


def _strategy(**params):
    return get_strategy("ada_qpacknet").from_config(params, TrainSettings())


@pytest.mark.parametrize("params, message", [
    ({"v_min": 0.8, "v_max": 0.5}, "must not exceed"),
    ({"v_max": 1.0}, r"v_max=1.0 is out of range; valid range is \(0.0, 1.0\)"),
    ({"tolerance": 0.0}, "strategy.tolerance=0.0 is out of range"),
    ({"quant_method": "log"}, "choose one of"),
    ({"quant_method": "linear_sym", "start_bits": 1}, "below the lowest usable bit-width 2"),
    ({"population": 2.5}, "must be an integer"),
])
def test_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        _strategy(**params)


def _tiny(n_tasks=2, **params):
    torch.manual_seed(0)
    model = ContinualModel(mlp((1, 4, 4), hidden=(8,)), 8, [2] * n_tasks, multi_head=True)
    s = _strategy(**params)
    s.setup(model, StreamInfo(n_tasks, "task", (1, 4, 4), [2] * n_tasks))
    return model, s


def _data(task, evaluate, loader=None):
    val = (torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.long))
    return TaskData(task, 2, loader or (lambda: []), val, evaluate)


def _distinct_owned(s, task):
    w, o = s.layers["body.1"].weight, s.owners["body.1"]
    return int(torch.unique(w[o == masks.owner_code(task)]).numel())


@pytest.mark.parametrize("method", ["kmeans", "linear_asym", "linear_sym"])
def test_bit_width_search_stops_at_first_drop_over_tolerance(method):
    model, s = _tiny(quant_method=method)
    # held-out accuracy falls by 5 points once a layer has <= 8 distinct values (< 4 bits)
    data = _data(0, lambda x, y: 0.9 if _distinct_owned(s, 0) > 8 else 0.85)
    s.before_task(0, data)
    s.quantise_task(0, data)
    q = s.quantised[0]
    first = 6 if method == "kmeans" else 8
    assert q["bits"] == 4 and q["tolerance_met"]
    assert [t["bits"] for t in q["trials"]] == list(range(first, 2, -1))
    assert q["trials"][-1]["drop_points"] == pytest.approx(5.0)
    # what the model holds is exactly what is stored, with at most 2**bits values per layer
    decoded = s.decoded(0)
    for n, m in s.layers.items():
        assert torch.equal(m.weight.detach(), decoded[n])
        assert torch.unique(decoded[n]).numel() <= 2 ** 4 + 1  # + the zero of free entries


def test_bit_width_search_keeps_first_width_when_it_misses():
    model, s = _tiny(tolerance=1.0)
    calls = []
    data = _data(0, lambda x, y: calls.append(0) or (0.9 if len(calls) == 1 else 0.5))
    s.before_task(0, data)
    s.quantise_task(0, data)
    q = s.quantised[0]
    assert q["bits"] == 6 and not q["tolerance_met"] and len(q["trials"]) == 1


def test_sparsity_search_picks_fittest_and_restores_state():
    model, s = _tiny(population=5, search_epochs=0, fitness_acc_weight=0.0)
    data = _data(0, lambda x, y: 0.5)
    s.before_task(0, data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s.search_ratios(0, data)
    log = s.search_log[0]
    assert len(log) == 5
    assert all(0.4 <= r <= 0.7 for c in log for r in c["ratios"].values())
    # fitness weight 0 on accuracy: the most pruned candidate wins
    best = max(log, key=lambda c: c["pruned_fraction"])
    assert s.ratios[0] == best["ratios"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(bool((o == masks.owner_code(0)).all()) for o in s.owners.values())
    # same seed, same draws (every DDP rank agrees)
    _, s2 = _tiny(population=5, search_epochs=0, fitness_acc_weight=0.0)
    s2.before_task(0, data)
    s2.search_ratios(0, data)
    assert s2.search_log[0] == log


def test_missing_validation_data_is_an_error():
    _, s = _tiny()
    data = TaskData(0, 2, lambda: [], None, lambda x, y: 1.0)
    s.before_task(0, data)
    with pytest.raises(ConfigError, match="val_fraction"):
        s.quantise_task(0, data)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One synthetic run; records task 0's logits and raw weights after every task."""
    run_dir = tmp_path_factory.mktemp("adaq") / "run"
    record = {"logits": [], "weights": [], "strategy": None}
    from cl_compress.benchmarks import BenchmarkSpec, build_stream
    from cl_compress.testing import QUICK, compose_config

    cfg = compose_config(QUICK + FAST)
    x0 = build_stream(BenchmarkSpec(**cfg["benchmark"])).experiences[0].test_x

    def snap(t, model, strategy):
        model.eval()
        with torch.no_grad(), strategy.task_context(0):
            record["logits"].append(model(x0, 0).clone())
        model.train()
        record["weights"].append({n: m.weight.detach().clone() for n, m in strategy.layers.items()})
        record["strategy"] = strategy

    record["results"] = run_quick(run_dir, FAST, on_task_end=snap)
    record["dir"] = run_dir
    return record


def test_zero_forgetting_bit_identical(quick_run):
    logits = quick_run["logits"]
    assert len(logits) == 3
    assert all(torch.equal(logits[0], o) for o in logits[1:])
    # the raw weights owned by task 0 never move after task 0 (exact freezing)
    s = quick_run["strategy"]
    for n, o in s.owners.items():
        own0 = o == masks.owner_code(0)
        assert all(torch.equal(w[n][own0], quick_run["weights"][0][n][own0])
                   for w in quick_run["weights"])


def test_stored_is_what_is_evaluated_and_accounting(quick_run):
    s, res = quick_run["strategy"], quick_run["results"]
    for j in range(3):
        decoded = s.decoded(j)
        for n, m in s.layers.items():
            vis = masks.visible_mask(s.owners[n], j)
            assert torch.equal(decoded[n], torch.where(vis, m.weight.detach(), 0.0))
    bits = res["strategy_extra"]["bits_per_task"]
    assert len(bits) == 3 and all(1 <= b <= 6 for b in bits)
    for t, q in s.quantised.items():
        # lowered while the drop stayed under the tolerance; stopped at the first miss
        assert all(tr["drop_points"] < 2.0 for tr in q["trials"] if tr["bits"] > q["bits"])
        below = [tr for tr in q["trials"] if tr["bits"] < q["bits"]]
        assert all(tr["drop_points"] >= 2.0 for tr in below) and len(below) <= 1
        assert all(0.4 <= r <= 0.7 for r in s.ratios[t].values())
    comp = res["compression"]
    used = sum(lq["n"] for q in s.quantised.values() for lq in q["layers"].values())
    assert used == comp["stored_weights"]
    code_bits = sum(q["bits"] * lq["n"] for q in s.quantised.values() for lq in q["layers"].values())
    assert comp["mean_code_bits"] == pytest.approx(code_bits / used)
    book = sum(lq["params"].numel() for q in s.quantised.values() for lq in q["layers"].values())
    side = comp["stored_params"] - used - book
    # owner index: per-task bitmaps or the fixed 2-bit packed index, whichever is smaller
    index = sum(min(quant.owner_bitmap_bits(o, 3), 2 * o.numel()) for o in s.owners.values())
    assert index <= 2 * comp["shared_entries"]
    assert comp["stored_bits"] == code_bits + 32 * (book + side) + index


def test_state_dict_round_trip(quick_run):
    s = quick_run["strategy"]
    ck = load_torch(quick_run["dir"] / "checkpoint.pt")["strategy"]
    _, fresh = _tiny()
    fresh.load_state_dict(ck)
    for j in range(3):
        a, b = s.decoded(j), fresh.decoded(j)
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_artifact_reloads_in_fresh_process(quick_run):
    art = quick_run["dir"] / "model_artifact.pt"
    cmd = [sys.executable, "-m", "cl_compress.reload", str(art), *QUICK, *FAST]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row == quick_run["results"]["acc_matrix"][-1]
    assert quick_run["results"]["compression"]["model_bytes"] == art.stat().st_size
