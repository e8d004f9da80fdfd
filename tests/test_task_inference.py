"""Class-incremental evaluation of the isolation strategies (task id inferred at test time)
and the guarantee that the task-incremental path is unchanged by it."""

import json
from pathlib import Path

import pytest
import torch

from cl_compress.engine.callbacks import state_fingerprint
from cl_compress.engine.task_inference import (
    TaskInferenceSettings,
    feature_basis,
    infer_tasks,
    make_negatives,
    refit_not_mine,
    task_scores,
)
from cl_compress.errors import ConfigError
from cl_compress.testing import run_quick

PIN = json.loads((Path(__file__).parent / "data" / "task_il_pin.json").read_text())
DIGITS = ["benchmark=split_digits", "benchmark.backend=native", "train.epochs=1"]


@pytest.mark.parametrize("strategy", ["naive", "individual", "packnet", "ada_qpacknet", "lrpet",
                                      "cacl"])
def test_task_il_unchanged_by_class_il_work(tmp_path, strategy):
    """Same acc_matrix, stored bits and final weights/strategy state (SHA-256) as pinned in
    tests/data for split_digits, seed 0 (computed with one CPU thread: float sums depend on the
    thread count, so the test uses one too). Pinned at 6f77006; re-pinned on 2026-12-02 for
    changes made on purpose: CACL's default growth became the authors' rule (acc and bits
    change; Ada-QPacknet's own default change was re-pinned in 656e744); PackNet
    (base_seed), Ada-QPacknet and LRPET (projection statistics) gained strategy-state keys, which
    change the fingerprint while their acc_matrix and stored bits stayed identical. CACL
    re-pinned on 2026-12-03: its default growth became ``auto`` (the authors' branch by stream,
    authors_full on split_digits). Fingerprints re-pinned on 2026-12-03 when the fingerprint
    began to hash each tensor's dtype and shape with its bytes (0-dim tensors included): the
    old fingerprints, acc_matrix and stored bits were checked equal to the pins first."""
    fp = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_quick(tmp_path, DIGITS + [f"strategy={strategy}"],
                        on_task_end=lambda t, m, s: fp.update(fp=state_fingerprint(m, s)))
    finally:
        torch.set_num_threads(threads)
    pin = PIN[strategy]
    assert res["scenario"] == "task" and "class_il" not in res
    assert res["acc_matrix"] == pin["acc_matrix"]
    assert res["compression"]["stored_bits"] == pin["stored_bits"]
    assert fp["fp"] == pin["fingerprint"]


@pytest.mark.parametrize("strategy", ["packnet", "individual"])
def test_class_scenario_writes_both_matrices(tmp_path, strategy):
    res = run_quick(tmp_path, [f"strategy={strategy}", "benchmark.scenario=class"])
    T = res["n_tasks"]
    assert res["scenario"] == "class"
    ci, ti = res["class_il"], res["task_il"]
    assert [len(r) for r in ci["acc_matrix"]] == list(range(1, T + 1))
    assert [len(r) for r in ci["task_inference_acc"]] == list(range(1, T + 1))
    assert res["acc_matrix"] == ci["acc_matrix"]  # the scenario's figure
    assert ci["score"] == "not_mine" and ci["negatives"] == "rotate_jigsaw"
    # class-IL can only lose against task-IL: a sample answered correctly with the task
    # inferred is answered correctly with the task given
    for rc, rt in zip(ci["acc_matrix"], ti["acc_matrix"]):
        assert all(c <= t + 1e-6 for c, t in zip(rc, rt))
    # the first row has one candidate task: inference is exact
    assert ci["task_inference_acc"][0] == [1.0]
    assert ci["acc_matrix"][0] == ti["acc_matrix"][0]
    # negatives are counted beside the steps: one per training sample
    per = res["budget"]["per_task"][0]
    assert per["negative_samples"] == per["samples_seen"]
    csv = (tmp_path / "metrics.csv").read_text()
    for key in ("eval/task_inference/task_0", "eval/task_il/avg_seen", "eval/acc/avg_seen",
                "budget/negative_samples"):
        assert key in csv, key
    assert (tmp_path / "acc_matrix.png").exists() and (tmp_path / "acc_matrix_task_il.png").exists()


def test_task_inference_storage_is_counted_and_refit_keeps_task_il(tmp_path):
    cls = ["strategy=packnet", "benchmark.scenario=class"]
    plain = run_quick(tmp_path / "a", cls + ["eval.negatives=none"])
    neg = run_quick(tmp_path / "b", cls + ["eval.refit_old_heads=false"])
    refit = run_quick(tmp_path / "c", cls)
    T = refit["n_tasks"]
    assert plain["class_il"]["score"] == "max_softmax"
    assert "negative_samples" not in plain["budget"]["per_task"][0]
    # the "not mine" output: one more row (256 weights + bias) in every stored head
    assert neg["compression"]["stored_params"] - plain["compression"]["stored_params"] == T * 257
    # the refit stores one feature basis per task, counted in compression, and its work
    # is counted beside the training steps
    extra = refit["compression"]["task_inference_params"]
    assert extra > 0 and extra % 256 == 0
    assert refit["compression"]["stored_params"] - neg["compression"]["stored_params"] == extra
    assert refit["budget"]["extra_steps"]["task_inference_refit"] == (T - 1) * T // 2 * 100
    assert "task_inference_refit" not in neg["budget"]["extra_steps"]
    # it only moves the "not mine" rows: the task-IL answers are those of the run without it
    assert refit["task_il"]["acc_matrix"] == neg["task_il"]["acc_matrix"]
    assert refit["class_il"]["refit_old_heads"] and not neg["class_il"]["refit_old_heads"]


def test_refit_moves_only_the_not_mine_row_and_spares_the_old_subspace():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 3)
    before = head.weight.detach().clone(), head.bias.detach().clone()
    own = torch.randn(200, 4) @ torch.randn(4, 8)  # the old task's features: a 4-d subspace
    basis = feature_basis(own, 0.999)
    assert basis["basis"].shape == (8, 4)
    negatives = torch.randn(300, 8) + 3.0
    u_own = own @ head.weight[-1].detach() + head.bias[-1].detach()
    u_neg = negatives @ head.weight[-1].detach() + head.bias[-1].detach()
    refit_not_mine(head, basis, negatives, steps=100, batch_size=64, lr=0.05, seed=0)
    assert torch.equal(head.weight[:-1], before[0][:-1]) and torch.equal(head.bias, before[1])
    u_own2 = own @ head.weight[-1].detach() + head.bias[-1].detach()
    u_neg2 = negatives @ head.weight[-1].detach() + head.bias[-1].detach()
    assert torch.allclose(u_own, u_own2, atol=1e-3)  # own features: output unchanged
    assert (u_neg2 - u_neg).mean() > 1.0  # the new task's features: pushed to "not mine"


def test_scores_rank_confident_heads_first():
    logits = torch.tensor([[4.0, 0.0, -5.0], [0.1, 0.0, 5.0]])  # 2 classes + not-mine
    for score in ("max_softmax", "entropy", "energy", "not_mine"):
        s = task_scores(logits, 2, score)
        assert s[0] > s[1], score
    with pytest.raises(ConfigError):
        task_scores(logits[:, :2], 2, "not_mine")


def test_negatives_differ_from_inputs_and_keep_shape():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8)
    for kind in ("rotate", "jigsaw", "rotate_jigsaw", "flip_jigsaw", "cutmix", "all"):
        n = make_negatives(x, kind)
        assert n.shape == x.shape
        assert (n - x).flatten(1).abs().sum(1).min() > 0, kind  # no image left unchanged
        # same pixel values, rearranged (rotations and tile shuffles only)
        if kind in ("rotate", "jigsaw", "rotate_jigsaw"):
            assert torch.equal(n.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


class _Toy(torch.nn.Module):
    """Two 'tasks' of 2 classes; task j's head answers confidently for inputs x[:, 0] == j."""

    extra_outputs = 0

    def __init__(self):
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(2))
        self.w = torch.nn.Parameter(torch.zeros(1))

    def head(self, j):
        return self.heads[j]

    def forward(self, x, j):
        mine = (x[:, 0] == j).float() * 10
        return torch.stack([mine * (x[:, 1] > 0), mine * (x[:, 1] <= 0)], 1)


class _NoContext:
    def task_context(self, j):
        import contextlib

        return contextlib.nullcontext()


def test_infer_tasks_picks_the_claiming_head_and_maps_to_global_labels():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, -1.0], [0.0, -1.0]])
    chosen, pred, S = infer_tasks(_Toy(), _NoContext(), x, [0, 1], [[5, 7], [2, 9]],
                                  "max_softmax", batch_size=3)  # batches straddle samples
    assert chosen.tolist() == [0, 1, 1, 0]
    assert pred.tolist() == [5, 2, 9, 7]
    assert S.shape == (2, 4)


def test_bad_eval_settings_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="eval.task_inference"):
        run_quick(tmp_path, ["strategy=packnet", "benchmark.scenario=class", "eval.task_inference=x"])
    with pytest.raises(ConfigError, match="not_mine"):
        TaskInferenceSettings(task_inference="not_mine", negatives="none").validate()
    with pytest.raises(ConfigError, match="rotation"):
        TaskInferenceSettings(task_inference="rotation", negatives="rotate").validate()
    with pytest.raises(ConfigError, match="refit_steps"):
        TaskInferenceSettings(refit_steps=0).validate()


def test_rotation_class_heads_answer_upright_classes(tmp_path):
    res = run_quick(tmp_path, ["strategy=packnet", "benchmark.scenario=class",
                               "eval.negatives=rotation_classes"])
    ci = res["class_il"]
    assert ci["score"] == "rotation" and not ci["refit_old_heads"]
    assert all(c <= t + 1e-6 for rc, rt in zip(ci["acc_matrix"], res["task_il"]["acc_matrix"])
               for c, t in zip(rc, rt))
    per = res["budget"]["per_task"][0]
    assert per["negative_samples"] == 3 * per["samples_seen"]  # 3 rotated copies per image


def test_report_has_a_class_il_table_with_anchors(tmp_path):
    from cl_compress.report import write_report
    from cl_compress.rundir.io import write_json

    root = tmp_path / "sweep"
    for s in ("naive", "packnet"):
        run_quick(root / "synthetic-class" / s / "s0", [f"strategy={s}", "benchmark.scenario=class"])
    write_json(root / "sweep.json", {"anchors": {"synthetic-class": {"Avalanche Replay-200": 0.5}}})
    md = write_report(root).read_text()
    assert "### Class-IL with task inference" in md
    table = md.split("### Class-IL with task inference")[1].split("![")[0]
    assert "| `naive` | 1 | shared head |" in table
    assert "not_mine / rotate_jigsaw + refit" in table
    assert "| Avalanche Replay-200 | | anchor | 50.00 |" in table
    assert (root / "synthetic-class-class-il.png").exists()


def test_class_il_run_resumes_to_the_same_results(tmp_path):
    cls = ["strategy=packnet", "benchmark.scenario=class"]
    full = run_quick(tmp_path / "full", cls)

    def stop(t, model, strategy):
        if t == 1:
            raise KeyboardInterrupt  # after task 1 is checkpointed

    with pytest.raises(KeyboardInterrupt):
        run_quick(tmp_path / "cut", cls, on_task_end=stop)
    resumed = run_quick(tmp_path / "cut", cls + ["resume=true"])
    for key in ("acc_matrix", "task_il", "class_il"):
        assert resumed[key] == full[key], key
    assert resumed["compression"]["stored_params"] == full["compression"]["stored_params"]


def test_evaluate_artifact_reproduces_the_task_il_row_of_a_class_il_run(tmp_path):
    """A class-IL run trains task-IL heads with extra outputs: the artifact loader rebuilds
    that model (not a shared head) and reproduces the run's task-IL row."""
    from cl_compress.evaluate_artifact import evaluate_run

    res = run_quick(tmp_path, ["strategy=packnet", "benchmark.scenario=class"])
    out = evaluate_run(tmp_path)
    assert out["row"] == "task-IL (task id given)"
    assert out["expected"] == res["task_il"]["acc_matrix"][-1] and out["reproduced"]
