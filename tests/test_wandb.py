"""W&B as the place where strategies are compared, read back from W&B's own offline records:
keys that mean one thing across strategies (a class-IL naive and PackNet run hold the same
quantity under every key they share), one history across resumes."""

import math

import pytest

from cl_compress import metrics
from cl_compress.testing import run_quick
from cl_compress.tracking import keys


def _expected(res: dict) -> dict[tuple[int, str], float]:
    """What each accuracy key must hold at x = task i, from results.json's matrices."""
    out: dict[tuple[int, str], float] = {}
    for prefix, stream, M in (("eval/acc", "stream", res["acc_matrix"]),
                              ("eval/task_il/acc", "stream/task_il", res["task_il"]["acc_matrix"])):
        per_task_forgetting = "eval/forgetting" if prefix == "eval/acc" else "eval/task_il/forgetting"
        avg = "eval/acc/avg_seen" if prefix == "eval/acc" else "eval/task_il/avg_seen"
        for i, row in enumerate(M):
            seen = [r[:i + 1] for r in M[:i + 1]]
            out |= {(i, f"{prefix}/task_{j}"): a for j, a in enumerate(row)}
            out[(i, avg)] = sum(row) / len(row)
            if prefix == "eval/acc":
                out[(i, "eval/acc/current")] = row[i]
            if i:
                out[(i, f"{stream}/forgetting")] = metrics.forgetting(seen)
                out[(i, f"{stream}/bwt")] = metrics.backward_transfer(seen)
                out |= {(i, f"{per_task_forgetting}/task_{j}"):
                        max(M[k][j] for k in range(j, i)) - M[i][j] for j in range(i)}
    return out


def _logged(run) -> dict[tuple[int, str], float]:
    return {(r["task"], k): v for r in run.history if "task" in r for k, v in r.items()
            if k.startswith(("eval/", "stream/")) and isinstance(v, int | float)
            and not k.startswith(("eval/acc_matrix", "eval/acc_per_task", "eval/acc_before"))}


@pytest.mark.slow
def test_class_il_keys_hold_one_quantity_in_every_strategy(tmp_path, monkeypatch):
    from cl_compress.tracking.offline import read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    common = ["logger=wandb", "benchmark.scenario=class", "train.epochs=null",
              "train.steps_per_task=12"]
    runs, results = {}, {}
    for name in ("naive", "packnet"):
        results[name] = run_quick(tmp_path / name, common + [f"strategy={name}"])
        runs[name] = read_run(tmp_path / name, wait=60)
    logged = {n: _logged(r) for n, r in runs.items()}
    shared = {k for _, k in logged["naive"]} & {k for _, k in logged["packnet"]}
    # both runs log class-IL (eval/acc, stream/*) and task-IL (eval/task_il, stream/task_il)
    for key in ("eval/acc/task_0", "eval/acc/avg_seen", "stream/forgetting", "stream/bwt",
                "eval/task_il/acc/task_0", "eval/task_il/avg_seen", "stream/task_il/forgetting",
                "stream/task_il/bwt", "eval/forgetting/task_0", "eval/task_il/forgetting/task_0"):
        assert key in shared, key
    assert {k for _, k in logged["packnet"]} - shared == {
        k for _, k in logged["packnet"] if k.startswith("eval/task_inference/")}
    for name, res in results.items():
        assert res["scenario"] == "class"
        # the meaning: eval/acc is the class-IL matrix (task id never given; PackNet: the
        # one with the task inferred), eval/task_il the task-id-given one
        headline = res["class_il"]["acc_matrix"] if name == "packnet" else res["acc_matrix"]
        assert res["acc_matrix"] == headline
        want = _expected(res)
        got = {ik: v for ik, v in logged[name].items() if ik[1] in shared}
        assert got.keys() == {ik for ik in want if ik[1] in shared}
        for ik, v in got.items():
            assert math.isclose(v, want[ik], abs_tol=1e-9), (name, ik, v, want[ik])
        # class-IL never beats task-IL on a sample: a right answer among all classes is a
        # right answer among the task's own classes (a swapped key would break this)
        for (i, k), v in got.items():
            if k.startswith("eval/acc/task_"):
                assert v <= logged[name][(i, k.replace("eval/acc/", "eval/task_il/acc/"))] + 1e-9
        s = runs[name].summary
        assert s["final/avg_acc"] == pytest.approx(metrics.average_accuracy(headline))
        assert s["final/forgetting"] == pytest.approx(metrics.forgetting(headline))
        assert s["final/task_il/avg_acc"] == pytest.approx(res["task_il"]["avg_acc"])
        assert s["final/task_il/forgetting"] == pytest.approx(res["task_il"]["forgetting"])
    # naive's shared head cannot answer task 0 after training task 1 (class-IL forgets) while
    # the same logits cut to task 0's classes can: the two keys differ in a naive run
    naive = results["naive"]
    assert naive["task_il"]["avg_acc"] > naive["avg_acc"]


def test_keys_name_each_view_apart():
    """Unit: which matrix goes under which key, for each kind of run."""
    R = [[0.9], [0.5, 0.8]]
    C = [[0.9], [0.3, 0.6]]
    TI = [[1.0], [0.5, 0.7]]
    task = keys.accuracy_metrics(keys.views("task", R), 1)
    assert task["eval/acc/task_0"] == 0.5 and not any("task_il" in k for k in task)
    assert task["stream/forgetting"] == pytest.approx(0.4) == task["eval/forgetting/task_0"]
    inferred = keys.accuracy_metrics(keys.views("task", R, C, TI), 1)  # stream trained as task-IL
    assert inferred["eval/acc/task_0"] == 0.3 and inferred["eval/task_il/acc/task_0"] == 0.5
    assert inferred["stream/forgetting"] == pytest.approx(0.6)
    assert inferred["stream/task_il/forgetting"] == pytest.approx(0.4)
    assert inferred["eval/task_inference/avg_seen"] == pytest.approx(0.6)
    shared_head = keys.accuracy_metrics(keys.views("class", C, masked_task_il=R), 1)
    assert {k for k in shared_head} == {k for k in inferred if "task_inference" not in k}
    assert "class-IL avg 0.4500" in keys.terminal_line(keys.views("class", C, masked_task_il=R), 1)
    first = keys.accuracy_metrics(keys.views("class", C, masked_task_il=R), 0)
    assert "stream/forgetting" not in first and first["eval/acc/current"] == 0.9


@pytest.mark.slow
def test_resumed_offline_run_is_one_continuous_history(tmp_path, monkeypatch):
    """A run interrupted after task 1 and resumed leaves one offline folder holding every
    task once, in order (the earlier session's rows replayed, its folder retired), and the
    printed `wandb sync` names that folder: uploading it uploads the whole run."""
    from cl_compress.tracking.offline import read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    ov = ["logger=wandb", "train.epochs=null", "train.steps_per_task=8"]
    run_quick(tmp_path / "whole", ov)
    ref = read_run(tmp_path / "whole", wait=60)
    run = tmp_path / "r"

    def crash(t, model, strategy):
        if t == 1:
            raise KeyboardInterrupt  # after task 1 is checkpointed and logged

    with pytest.raises(KeyboardInterrupt):
        run_quick(run, ov, on_task_end=crash)
    first = list((run / "wandb").glob("offline-run-*"))
    assert len(first) == 1
    res = run_quick(run, ov + ["resume=true"])
    live = sorted((run / "wandb").glob("offline-run-*"))
    assert len(live) == 1 and live[0] != first[0]
    assert (first[0].with_name("replayed-" + first[0].name)).is_dir()  # kept, not deleted
    assert res["wandb"]["sync"] == f"wandb sync {live[0]}"
    got = read_run(live[0], wait=60)
    T = res["n_tasks"]
    assert [r["task"] for r in got.rows_with("eval/acc/avg_seen")] == list(range(T))
    assert [r["_step"] for r in got.history] == list(range(len(got.history)))
    steps = [r["train/step"] for r in got.rows_with("train/loss")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    assert steps == [r["train/step"] for r in ref.rows_with("train/loss")]
    # the figures are the uninterrupted run's (resume reproduces it), task by task
    for key in ("eval/acc/avg_seen", "stream/forgetting", "budget/train_steps"):
        assert [r[key] for r in got.rows_with(key)] == pytest.approx(
            [r[key] for r in ref.rows_with(key)]), key


def test_system_metrics_and_console_on_by_default_off_by_setting():
    from cl_compress.tracking import TrackerSettings, _wandb_settings

    on = _wandb_settings(TrackerSettings())
    assert on.console == "wrap" and not on.x_disable_stats
    off = _wandb_settings(TrackerSettings(system_metrics=False, console=False))
    assert off.console == "off" and off.x_disable_stats


def test_default_trainer_is_auto_and_the_device_is_named():
    from cl_compress.compose import compose_config
    from cl_compress.engine.device import describe_device

    c = compose_config([])
    assert c["trainer"]["accelerator"] == "auto"
    import torch

    text = describe_device(c["trainer"])
    assert text.startswith("GPU") if torch.cuda.is_available() else text == "CPU (no GPU found)"
    assert describe_device({"accelerator": "cpu"}) == "CPU"


def test_incomplete_task_il_rows_are_not_logged():
    """A checkpoint from before task-IL rows were kept for a shared head: no task-IL keys
    (rather than figures over fewer tasks)."""
    R = [[0.9], [0.5, 0.8]]
    v = keys.views("class", R, masked_task_il=[[1.0], [0.9, 0.95]])
    assert v.task_il is not None
    short = keys.views("class", R, masked_task_il=[[0.9, 0.95]])
    assert short.task_il is None and not any("task_il" in k for k in keys.accuracy_metrics(short, 1))
    assert keys.complete([[1.0]], 2) is None and keys.complete(R, 2) == R
