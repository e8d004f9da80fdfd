"""The task loop's callbacks, each on its own (engine/callbacks/), and the loop's event order."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cl_compress.engine.callbacks import (
    BudgetLedger,
    Checkpointer,
    ClassILInference,
    LoopState,
    ProgressDisplay,
    RankAgreement,
    RunCallback,
    TaskEndHook,
    TaskLogger,
    state_fingerprint,
)
from cl_compress.engine.callbacks.task_logger import task_metrics
from cl_compress.engine.task_inference import TaskInferenceSettings
from cl_compress.errors import CheckpointError
from cl_compress.strategies.base import CompressionStats
from cl_compress.testing import QUICK, compose_config


class FakeStrategy:
    name = "fake"
    label = "fake"

    def __init__(self):
        self.extra = {"search": 5}

    def take_extra_steps(self):
        out, self.extra = self.extra, {}
        return out

    def compression_stats(self):
        return CompressionStats(100, 3200, {"weights": 100})

    def task_metrics(self, t):
        return {"sparsity": 0.5}


def fake_state(**kw) -> LoopState:
    stream = SimpleNamespace(n_tasks=2, name="s", scenario="task", experiences=[])
    st = LoopState(stream, torch.nn.Linear(2, 2), FakeStrategy(), SimpleNamespace(eval_batch_size=8),
                   SimpleNamespace(progress_bar=False), Path("."), 0, {})
    st.system = SimpleNamespace(run_steps=0, phase_steps=0, phase_samples=0, phase_negatives=0,
                                loss_fn=None, progress=None)
    for k, v in kw.items():
        setattr(st, k, v)
    return st


def test_budget_ledger_counts_phases_extra_steps_and_restores():
    st = fake_state(experience=SimpleNamespace(train_x=torch.zeros(100, 2)))
    led = BudgetLedger(steps_per_task=30)
    led.on_task_start(st, 0)
    assert st.strategy.extra == {}  # counts before the task are not this task's
    st.strategy.extra = {"search": 7}
    st.system.phase_steps, st.system.phase_samples = 20, 640
    led.on_phase_end(st, 0, 0, SimpleNamespace(name="train"), SimpleNamespace(world_size=2))
    st.system.phase_steps, st.system.phase_samples = 10, 320
    led.on_phase_end(st, 0, 1, SimpleNamespace(name="retrain"), SimpleNamespace(world_size=1))
    led.on_task_trained(st, 0)
    entry = st.task_budget
    assert entry["train_steps"] == 30 and entry["samples_seen"] == 640 * 2 + 320
    assert entry["phases"]["train"] == {"steps": 20, "epochs": 12.8, "samples": 1280}
    assert entry["extra_steps"] == {"search": 7}
    res: dict = {}
    led.on_results(st, res)
    assert res["budget"]["train_steps"] == 30 and res["budget"]["extra_steps"] == {"search": 7}
    again = BudgetLedger(steps_per_task=30)
    again.load_state_dict(led.state_dict())
    again.on_run_start(st)
    assert again.per_task == led.per_task and st.system.run_steps == 30


def test_rank_agreement_without_ddp_and_fingerprint_sees_one_bit():
    st = fake_state()
    RankAgreement().on_task_end(st, 0)
    assert st.ddp == {"world_size": 1}
    m = torch.nn.Linear(3, 2)
    s = SimpleNamespace(state_dict=lambda: {"mask": torch.ones(2, dtype=torch.bool)})
    a = state_fingerprint(m, s)
    with torch.no_grad():
        m.weight[0, 0] = torch.nextafter(m.weight[0, 0], torch.tensor(10.0))
    assert state_fingerprint(m, s) != a


def test_fingerprint_covers_zero_dim_buffers_of_batchnorm():
    """BatchNorm's num_batches_tracked is a 0-dim int64 tensor: it is hashed (a bare
    .view(uint8) refuses 0-dim tensors, which broke every DDP run on a BN ResNet)."""
    m = torch.nn.BatchNorm2d(3)
    s = SimpleNamespace(state_dict=lambda: {"count": torch.tensor(7)})
    a = state_fingerprint(m, s)
    m.num_batches_tracked += 1
    assert state_fingerprint(m, s) != a


def _fake_dist(monkeypatch, backend="gloo", peer=None):
    """torch.distributed as 2 ranks: broadcasts are recorded; all_gather_object returns this
    rank's object and ``peer`` (the other rank's, default: the same)."""
    import torch.distributed as dist

    sent = []
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_backend", lambda: backend)
    monkeypatch.setattr(dist, "broadcast", lambda t, src: sent.append((t, src)))

    def gather(out, obj):
        out[0], out[1] = obj, obj if peer is None else peer(obj)

    monkeypatch.setattr(dist, "all_gather_object", gather)
    return sent


def test_broadcast_norm_buffers_sends_every_batchnorm_buffer_from_rank_zero(monkeypatch):
    from cl_compress.models import broadcast_norm_buffers

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Linear(2, 2))
    assert broadcast_norm_buffers(net) is False  # no process group: nothing sent
    sent = _fake_dist(monkeypatch)
    assert broadcast_norm_buffers(net) is True
    bn = net[1]
    assert [t for t, _ in sent] == list(bn.buffers()) and {src for _, src in sent} == {0}


def test_rank_check_names_the_tensors_that_differ(monkeypatch):
    from cl_compress.engine.callbacks.ranks import check_ranks_agree

    m = torch.nn.Linear(3, 2)
    s = SimpleNamespace(state_dict=lambda: {"masks": {"fc": torch.ones(2, dtype=torch.bool)}})
    _fake_dist(monkeypatch)
    assert check_ranks_agree(m, s, 0)["ranks_identical"] is True
    _fake_dist(monkeypatch, peer=lambda d: d | {"strategy.masks.fc": "0" * 64})
    with pytest.raises(RuntimeError, match=r"after task 1: 1 tensor\(s\) differ .*strategy\.masks\.fc"):
        check_ranks_agree(m, s, 1)


def test_task_logger_logs_each_task_with_other_callbacks_metrics():
    logged = []
    tracker = SimpleNamespace(log_experience=lambda t, m: logged.append((t, m)),
                              log_accuracy_chart=lambda R: logged.append(("chart", R)))
    st = fake_state(R=[[0.9], [0.8, 0.95]], acc_before=[0.91, 0.96], seen_reference_bits=[6400, 12800],
                    task_budget={"train_steps": 10, "epochs": 1.0, "samples_seen": 320,
                                 "phases": {"train": {"steps": 10}}, "extra_steps": {"search": 2}},
                    task_metrics={"eval/class_il/avg_seen": 0.5})
    st.timing["task_seconds"] = [1.0, 2.0]
    TaskLogger(tracker).on_task_end(st, 1)
    t, m = logged[0]
    assert t == 1 and logged[1] == ("chart", st.R)
    assert m["eval/acc/task_0"] == 0.8 and m["eval/acc/avg_seen"] == pytest.approx(0.875)
    assert m["stream/forgetting"] == pytest.approx(0.1) and m["compress/ratio_vs_individual"] == 4.0
    assert m["budget/steps/train"] == 10 and m["budget/extra_steps/search"] == 2
    assert m["eval/class_il/avg_seen"] == 0.5 and m["compress/sparsity"] == 0.5
    assert m == task_metrics(st, 1)


def test_class_il_results_replace_the_matrix_and_count_statistics():
    cb = ClassILInference(TaskInferenceSettings())
    cb.C, cb.TI = [[0.5], [0.4, 0.6]], [[1.0], [0.7, 0.9]]
    cb.stats = {0: {"mean": torch.zeros(3, 4)}, 1: {"mean": torch.zeros(3, 4)}}
    st = fake_state(R=[[0.9], [0.9, 0.95]], callbacks=[cb])
    res = {"acc_matrix": st.R, "scenario": "task"}
    cb.on_results(st, res)
    assert res["scenario"] == "class" and res["acc_matrix"] == cb.C
    assert res["task_il"]["acc_matrix"] == st.R and res["class_il"]["task_inference_avg"] == 0.8
    assert cb.stored_params() == {"task_inference_params": 24}
    assert st.compression_stats().stored_bits == 3200 + 32 * 24
    back = ClassILInference(TaskInferenceSettings())
    back.load_state_dict(cb.state_dict())
    assert back.C == cb.C and back.TI == cb.TI and set(back.stats) == {0, 1}


def test_progress_and_task_end_hook():
    st = fake_state(R=[[0.9]], planned=[5])
    st.timing["task_seconds"] = [1.0]
    seen = []
    p = ProgressDisplay(show=False)
    p.on_run_start(st)
    p.on_fit_start(st, 0)
    p.on_task_end(st, 0)
    assert p.progress.first_task == 0 and p.progress.planned_total() >= 5
    TaskEndHook(lambda t, m, s: seen.append((t, m, s))).on_task_end(st, 0)
    assert seen == [(0, st.model, st.strategy)]


def _run(run_dir, extra_cbs, resume=False, overrides=()):
    """run_stream with the default callbacks plus ``extra_cbs`` on a tiny synthetic stream."""
    from cl_compress.engine.loop import default_callbacks, run_stream
    from cl_compress.experiment import build_experiment
    from cl_compress.tracking import Tracker, TrackerSettings

    c = compose_config(QUICK + ["train.epochs=1", *overrides])
    exp = build_experiment(c)
    tracker = Tracker(run_dir, TrackerSettings(**c["logger"]), name="t", group="g", config=c)
    cbs = default_callbacks(tracker, exp.plan.trainer, resume=resume,
                            steps_per_task=exp.plan.train.steps_per_task) + extra_cbs
    try:
        return run_stream(exp.stream, exp.model, exp.strategy, exp.plan.train, exp.plan.trainer,
                          tracker, run_dir, seed=0, config=c, callbacks=cbs)
    finally:
        tracker.finish()


class Recorder(RunCallback):
    def __init__(self):
        self.events = []
        self.loaded = None

    def __getattribute__(self, name):
        if name.startswith("on_"):
            events = object.__getattribute__(self, "events")
            return lambda *a: events.append((name, *[x for x in a[1:2] if isinstance(x, int)]))
        return object.__getattribute__(self, name)

    def state_dict(self):
        return {"recorder_note": len(self.events)}

    def load_state_dict(self, ck):
        self.loaded = ck.get("recorder_note")


def test_loop_emits_events_in_order_and_checkpoints_callback_state(tmp_path):
    rec = Recorder()
    res = _run(tmp_path / "run", [rec])
    names = [e[0] for e in rec.events]
    per_task = ["on_task_start", "on_fit_start", "on_phase_start", "on_phase_end",
                "on_task_trained", "on_evaluate", "on_task_end"]
    T = res["n_tasks"]
    assert T >= 2 and names == ["on_run_start", *per_task * T, "on_results", "on_run_end"]
    assert [e[1] for e in rec.events if e[0] == "on_task_end"] == list(range(T))
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    # saved in on_task_end of the last task, before the recorder heard that event
    assert ck["recorder_note"] == len(per_task) * T and ck["next_task"] == T
    assert res["budget"]["train_steps"] > 0 and (tmp_path / "run" / "results.json").is_file()


def test_checkpointer_restores_every_callback_and_refuses_another_run(tmp_path):
    run = tmp_path / "run"

    def stop_after_first(t, model, strategy):
        if t == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(run, [TaskEndHook(stop_after_first)])
    rec = Recorder()
    res = _run(run, [rec], resume=True)
    assert rec.loaded is None  # the recorder was not in the first run: nothing of it stored
    T = res["n_tasks"]
    assert [e[1] for e in rec.events if e[0] == "on_task_start"] == list(range(1, T))  # after task 0
    assert len(res["acc_matrix"]) == T and len(res["budget"]["per_task"]) == T
    st = fake_state(run_dir=run)
    st.strategy.name = "another"
    with pytest.raises(CheckpointError, match="strategy_name"):
        Checkpointer(resume=True).on_run_start(st)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpointer(resume=True).on_run_start(fake_state(run_dir=tmp_path / "empty"))
