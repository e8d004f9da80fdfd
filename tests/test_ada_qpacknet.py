"""Ada-QPacknet: searches, exact freezing, stored == evaluated, artifact reload in a new process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cl_compress.compress import masks, quant
from cl_compress.errors import ConfigError
from cl_compress.models import ContinualModel
from cl_compress.models.backbones import mlp
from cl_compress.rundir.io import load_torch
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
    ({"capacity": "both"}, r"strategy.capacity='both' is invalid; choose one of \['shared_bits', "
                           r"'exclusive'\]"),
    ({"codebook": "all"}, r"strategy.codebook='all' is invalid; choose one of"),
    ({"search_mode": "random"}, r"strategy.search_mode='random' is invalid; choose one of"),
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
    assert _timeless(s2.search_log[0]) == _timeless(log)
    # the draws follow the run's task seed (TaskData.seed), not only search_seed
    _, s3 = _tiny(population=5, search_epochs=0, fitness_acc_weight=0.0)
    other = _data(0, lambda x, y: 0.5)
    other.seed = 1001
    s3.before_task(0, other)
    s3.search_ratios(0, other)
    assert [c["ratios"] for c in s3.search_log[0]] != [c["ratios"] for c in log]


def test_authors_search_mode_trains_each_candidate_through_taskdata_fit():
    """search_mode=authors: every candidate starts from fresh U(-1, 1) weights, is pruned and
    trained with TaskData.fit (the engine); the model and owners are restored afterwards."""
    model, s = _tiny(population=3, search_mode="authors")
    seen = []

    def fitter(phase):
        w = s.layers["body.1"].weight.detach()
        own = s.owners["body.1"] == masks.owner_code(0)
        seen.append((phase.name, phase.lr, float(w[own].abs().max()), float(w[~own].abs().max())))
        return 7

    data = TaskData(0, 2, lambda: [], (torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.long)),
                    lambda x, y: 0.5, fitter=fitter)
    s.before_task(0, data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s.search_ratios(0, data)
    assert len(seen) == 3 and all(n == "search" and lr == s.train.lr for n, lr, _, _ in seen)
    # re-initialised U(-1, 1) (far beyond the default init range 1/sqrt(16) = 0.25); pruned are zero
    assert all(0.5 < big <= 1.0 and pruned == 0.0 for _, _, big, pruned in seen)
    assert all(c["steps"] == 7 for c in s.search_log[0])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_taskdata_fit_without_an_engine_is_an_error():
    data = _data(0, lambda x, y: 1.0)
    with pytest.raises(RuntimeError, match="no training engine"):
        data.fit(None)


def _timeless(log):
    return [{k: v for k, v in c.items() if k != "seconds"} for c in log]


def test_missing_validation_data_is_an_error():
    _, s = _tiny()
    data = TaskData(0, 2, lambda: [], None, lambda x, y: 1.0)
    s.before_task(0, data)
    with pytest.raises(ConfigError, match="val_fraction"):
        s.quantise_task(0, data)


def _quantise(s, task, data, ratio=0.5):
    s.ratios[task] = {n: ratio for n in s.layers}
    s.prune(task)
    s.store_task_state(task)
    s.tasks_done = task + 1
    s.quantise_task(task, data)


def test_shared_bits_claim_rule_and_own_codes():
    """Shared bit capacity: a position whose used bits leave no room for the reserve is not
    claimed; the rest is claimed (re-initialised) again; each task answers with its own codes."""
    model, s = _tiny(n_tasks=3, quant_method="linear_asym", start_bits=16, min_bits=16)
    data = _data(0, lambda x, y: 0.9)
    s.before_task(0, data)
    assert s.capacity_log[0]["usable_positions"] == 1.0 and s.capacity_log[0]["free_bits"] == 1.0
    _quantise(s, 0, data)
    held0 = {n: h.clone() for n, h in s.held[0].items()}
    dec0 = s.decoded(0)
    total = sum(h.numel() for h in held0.values())
    n0 = sum(int(h.sum()) for h in held0.values())
    s.before_task(1, _data(1, lambda x, y: 0.9))
    # 16 + 16 bits would not stay under 32: only the positions task 0 pruned are claimable
    for n, h in held0.items():
        assert torch.equal(s.owners[n] == masks.owner_code(1), ~h)
        assert bool((s.layers[n].weight.detach()[h] == 0).all())
    assert s.capacity_log[1]["usable_positions"] == pytest.approx(1 - n0 / total)
    assert s.capacity_log[1]["free_bits"] == pytest.approx(1 - 16 * n0 / (32 * total))
    with torch.no_grad():  # task 1 trains: its weights move, task 0's codes do not
        for m in s.layers.values():
            m.weight.add_(0.5 * (m.weight != 0))
    _quantise(s, 1, _data(1, lambda x, y: 0.9))
    assert all(torch.equal(s.decoded(0)[n], dec0[n]) for n in dec0)
    with s.task_context(0):
        assert all(torch.equal(m.weight.detach(), dec0[n]) for n, m in s.layers.items())
    dec1 = s.decoded(1)
    assert all(torch.equal(m.weight.detach(), dec1[n]) for n, m in s.layers.items())
    # a position holding one 16-bit code has no room for another 16 (< 32 - 16 fails)
    s.before_task(2, _data(2, lambda x, y: 0.9))
    used = s.used_bits()
    for n, o in s.owners.items():
        assert torch.equal(o == masks.owner_code(2), used[n] < 16)


def test_shared_bits_reuses_positions_across_tasks():
    """With a 6-bit reserve, a position holding one task's codes is claimed by the next task
    too (the authors' packing of several low-bit codes into one 32-bit slot)."""
    model, s = _tiny(n_tasks=3)
    s.before_task(0, _data(0, lambda x, y: 0.9))
    _quantise(s, 0, _data(0, lambda x, y: 0.9))
    s.before_task(1, _data(1, lambda x, y: 0.9))
    assert s.capacity_log[1]["usable_positions"] == 1.0
    assert all(bool((o == masks.owner_code(1)).all()) for o in s.owners.values())
    b0 = s.quantised[0]["bits"]
    n0 = sum(int(h.sum()) for h in s.held[0].values())
    total = sum(o.numel() for o in s.owners.values())
    assert s.capacity_log[1]["free_bits"] == pytest.approx(1 - b0 * n0 / (32 * total))


def test_kmeans_warns_when_iterations_run_out():
    x = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="kmeans_iters=1 before converging"):
        quant.kmeans_1d(x, 16, iters=1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quant.kmeans_1d(x, 16, iters=10_000)


def test_layer_with_zeros_codebook_fits_zeros_too():
    x = torch.linspace(0.5, 1.0, 100)
    _, lv, _ = quant.quantize(x, 1, "kmeans", zeros=400)
    assert float(lv.min()) == 0.0  # one centroid sits on the layer's zeros
    _, lv2, _ = quant.quantize(x, 1, "kmeans")
    assert float(lv2.min()) > 0.5


CAPACITIES = ["shared_bits", "exclusive"]


@pytest.fixture(scope="module", params=CAPACITIES)
def quick_run(request, tmp_path_factory):
    """One synthetic run per capacity mode; records the raw weights after every task."""
    fast = FAST + [f"strategy.capacity={request.param}"]
    run_dir = tmp_path_factory.mktemp("adaq") / "run"
    record = {"weights": [], "strategy": None, "capacity": request.param, "fast": fast}

    def snap(t, model, strategy):
        record["weights"].append({n: m.weight.detach().clone() for n, m in strategy.layers.items()})
        record["strategy"] = strategy

    record["results"] = run_quick(run_dir, fast, on_task_end=snap)
    record["dir"] = run_dir
    return record


def test_zero_forgetting_raw_weights(quick_run):
    """Bit-identical old-task outputs and accuracies are the contract's (tests/test_contract.py);
    here: what each capacity mode does to the stored weights of task 0."""
    s = quick_run["strategy"]
    R = quick_run["results"]["acc_matrix"]  # both modes: every earlier accuracy stays as learned
    assert all(R[i][j] == R[j][j] for i in range(len(R)) for j in range(i + 1))
    if quick_run["capacity"] == "exclusive":  # raw weights owned by task 0 never move
        for n, o in s.owners.items():
            own0 = o == masks.owner_code(0)
            assert all(torch.equal(w[n][own0], quick_run["weights"][0][n][own0])
                       for w in quick_run["weights"])
    else:  # shared: later tasks reuse task 0's positions (its codes are kept apart)
        assert all(bool((o == masks.owner_code(2)).sum() > 0) for o in s.owners.values())
        overlap = sum(int((s.held[0][n] & s.held[2][n]).sum()) for n in s.layers)
        assert overlap > 0


def test_stored_is_what_is_evaluated_and_accounting(quick_run):
    s, res = quick_run["strategy"], quick_run["results"]
    shared = quick_run["capacity"] == "shared_bits"
    for j in range(3):
        decoded = s.decoded(j)
        for n, m in s.layers.items():
            if shared:  # task j's own codes only: the live weights right after task j ended
                assert torch.equal(decoded[n], quick_run["weights"][j][n])
                assert not bool((decoded[n][~s.held[j][n]] != 0).any())  # zero where no code
            else:
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
    # capacity at each task's start, in results.json: free bits = 1 - stored code bits / 32N
    cap, total = res["strategy_extra"]["capacity"], comp_entries(res)
    for t in range(3):
        code_bits = sum(s.quantised[j]["bits"] * lq["n"] for j in range(t)
                        for lq in s.quantised[j]["layers"].values())
        assert cap[str(t)]["free_bits"] == pytest.approx(1 - code_bits / (32 * total))
        assert 0 < cap[str(t)]["usable_positions"] <= 1
    comp = res["compression"]
    used = sum(lq["n"] for q in s.quantised.values() for lq in q["layers"].values())
    assert used == comp["stored_weights"]
    code_bits = sum(q["bits"] * lq["n"] for q in s.quantised.values() for lq in q["layers"].values())
    assert comp["mean_code_bits"] == pytest.approx(code_bits / used)
    book = sum(lq["params"].numel() for q in s.quantised.values() for lq in q["layers"].values())
    side = comp["stored_params"] - used - book
    if shared:  # one bitmap per task over the positions it could claim
        index = sum(quant.shared_map_bits([s.held[t][n] for t in range(3)],
                                          [s.quantised[t]["bits"] for t in range(3)], 6)
                    for n in s.layers)
        assert index == 3 * comp["shared_entries"]  # every position claimable by every task
    else:  # owner index: per-task bitmaps or the fixed 2-bit packed index, whichever is smaller
        index = sum(min(quant.owner_bitmap_bits(o, 3), 2 * o.numel()) for o in s.owners.values())
        assert index <= 2 * comp["shared_entries"]
    assert comp["stored_bits"] == code_bits + 32 * (book + side) + index


def comp_entries(res):
    return res["compression"]["shared_entries"]


def test_state_dict_round_trip(quick_run):
    s = quick_run["strategy"]
    ck = load_torch(quick_run["dir"] / "checkpoint.pt")["strategy"]
    _, fresh = _tiny(capacity=quick_run["capacity"])
    fresh.load_state_dict(ck)
    for j in range(3):
        a, b = s.decoded(j), fresh.decoded(j)
        assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.slow  # 9 s: a fresh process; the contract kit reloads Ada's default artifact in one
def test_artifact_reloads_in_fresh_process(quick_run):
    """``python -m cl_compress.evaluate_artifact ARTIFACT overrides`` under exclusive
    capacity; the default shared_bits is reloaded by tests/test_reliability.py and every
    strategy's ``Strategy.load_artifact`` by the contract (tests/test_contract.py)."""
    if quick_run["capacity"] != "exclusive":
        pytest.skip("shared_bits: the contract reloads it in a fresh process; test_reliability "
                    "reloads it in-process")
    art = quick_run["dir"] / "model_artifact.pt"
    cmd = [sys.executable, "-m", "cl_compress.evaluate_artifact", str(art), *QUICK, *quick_run["fast"]]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])["acc_row"]
    assert row == quick_run["results"]["acc_matrix"][-1]
    assert quick_run["results"]["compression"]["model_bytes"] == art.stat().st_size


KILLER = """
import os, signal, sys
from cl_compress.testing import run_quick
def die(t, model, strategy):
    if t == 1:
        os.kill(os.getpid(), signal.SIGKILL)
run_quick(sys.argv[1], sys.argv[2:], on_task_end=die)
"""


def test_resume_carries_the_shared_capacity(quick_run, tmp_path):
    """A run killed after task 1 and resumed ends exactly as the uninterrupted run: the held
    positions, codes and capacity log travel in the checkpoint."""
    if quick_run["capacity"] != "shared_bits":
        pytest.skip("the shared-capacity state is what this checks")
    import signal

    run = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(run), *QUICK, *quick_run["fast"]],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    resumed = run_quick(run, quick_run["fast"] + ["resume=true"])
    full = quick_run["results"]
    assert resumed["acc_matrix"] == full["acc_matrix"]
    assert resumed["compression"]["stored_bits"] == full["compression"]["stored_bits"]
    assert resumed["strategy_extra"]["capacity"] == full["strategy_extra"]["capacity"]


def test_prune_fraction_is_counted_in_weights(quick_run):
    """results.json prune_fraction and the fitness use released weights / claimed weights over
    the whole body, not a mean of per-layer ratios (the layers differ in size and ratio)."""
    s, res = quick_run["strategy"], quick_run["results"]
    for t in range(2):  # the pruned tasks
        layers = list(s.layers)
        pruned = [s.pruned[t][n] for n in layers]
        claimed = [s.claimed[t][n] for n in layers]
        weighted = sum(pruned) / sum(claimed)
        unweighted = sum(p / c for p, c in zip(pruned, claimed)) / len(layers)
        assert abs(weighted - unweighted) > 1e-3  # the two readings differ on this run
        assert res["strategy_extra"]["prune_fraction"][t] == pytest.approx(weighted)
        # the fittest candidate was scored on the same weighted share (same ratios, same claim)
        best = max(s.search_log[t], key=lambda c: c["fitness"])
        assert best["pruned_fraction"] == pytest.approx(weighted, abs=0.02)


def test_fixed_width_probe_measures_the_same_sub_network_and_restores_it():
    """probe_bits: the fp32 sub-network, then the same weights at each fixed width with the
    authors' codebook (k-means over the masked layer with its zeros), each evaluated by the
    runner's callable; the stored codes are written back bit for bit."""
    model, s = _tiny(probe_bits=[1, 3])
    data = _data(0, lambda x, y: 0.9)
    s.before_task(0, data)
    own = s.owners["body.1"] == masks.owner_code(0)
    fp = s.layers["body.1"].weight.detach().clone()
    s.quantise_task(0, data)
    stored = s.layers["body.1"].weight.detach().clone()
    seen = []

    def evaluate():  # what the layer holds when the runner would evaluate the test set
        w = s.layers["body.1"].weight
        seen.append(int(torch.unique(w[own]).numel()))
        if torch.equal(w[own], fp[own]):
            return 0.95
        return 0.5 if seen[-1] <= 2 else 0.9

    s.probe(0, evaluate)
    assert torch.equal(s.layers["body.1"].weight, stored)  # restored
    assert s.fixed_width[0] == {"fp32": 0.95, "1": 0.5, "3": 0.9}
    assert seen[1] <= 2 and seen[2] <= 8  # 2 and 8 levels: one of them may be the zero
    assert s.extra_results()["fixed_width_probe"]["tasks"]["0"] == s.fixed_width[0]
    assert s.state_dict()["fixed_width"] == s.fixed_width
    # off by default: no probe, no state key (the pinned fingerprints stay as they were)
    _, plain = _tiny()
    assert plain.cfg.probe_bits == [] and "fixed_width" not in plain.state_dict()
    with pytest.raises(ConfigError, match=r"probe_bits=\[4.5\] must list integer"):
        _strategy(probe_bits=[4.5])


def test_bookkeeping_authors_closes_a_layer_after_26_bits_of_widths():
    """pruner.py:263: the authors add a task's width to every position of the layer, so after
    five 6-bit tasks (30 bits, not < 32 - 6) no position can be claimed; per position, the
    positions no task kept a code in stay free."""
    for rule, usable in (("authors", 0.0), ("per_position", 1.0)):
        model, s = _tiny(n_tasks=6, bookkeeping=rule)
        for t in range(5):
            s.quantised[t] = {"bits": 6}
            s.held[t] = {n: torch.zeros(m.weight.shape, dtype=torch.bool) for n, m in s.layers.items()}
        s.before_task(5, _data(5, lambda x, y: 0.9))
        assert s.capacity_log[5]["usable_positions"] == usable, rule
    model, s = _tiny(n_tasks=6, bookkeeping="authors")
    for t in range(4):  # 24 bits < 26: still open
        s.quantised[t] = {"bits": 6}
        s.held[t] = {n: torch.zeros(m.weight.shape, dtype=torch.bool) for n, m in s.layers.items()}
    s.before_task(4, _data(4, lambda x, y: 0.9))
    assert s.capacity_log[4]["usable_positions"] == 1.0
    with pytest.raises(ConfigError, match="bookkeeping=authors needs strategy.capacity=shared_bits"):
        _strategy(bookkeeping="authors", capacity="exclusive")


def test_final_mode_authors_trains_a_static_mask_from_the_initial_magnitudes():
    """prune_manager.py:97-105 / pruner.py:253-254: redraw U(-1, 1), prune by the initial
    magnitudes with the searched ratios, one sparse phase over the whole budget."""
    model, s = _tiny(final_mode="authors", search_epochs=0, population=1)
    assert [p.name for p in s.phases(0)] == ["sparse"]
    data = _data(0, lambda x, y: 0.9)
    s.before_task(0, data)
    s.before_phase(0, s.phases(0)[0], data)
    w, o = s.layers["body.1"].weight, s.owners["body.1"]
    kept = o == masks.owner_code(0)
    assert w.abs().max() > 0.3  # U(-1, 1), not the layer's default range (1/sqrt(16) = 0.25)
    assert bool((w[~kept] == 0).all()) and w[kept].abs().min() >= w[~kept].abs().max()
    ratio = s.ratios[0]["body.1"]
    assert abs((~kept).float().mean().item() - ratio) < 0.05
    assert torch.equal(s._train["body.1"].bool(), kept)  # only the kept positions train
