"""The Lightning engine computes exactly what a plain PyTorch loop computes.

Naive fine-tuning through the whole runner (Lightning Trainer per phase, ContinualSystem,
seeding, per-task loaders, evaluation) must give the same weights and accuracy matrix as
a hand-written loop over the same batches, and the per-epoch training statistics it logs
must equal the loop's own sums.
"""

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from cl_compress import metrics
from cl_compress.benchmarks import BenchmarkSpec, build_stream, make_loader
from cl_compress.engine.loop import TrainerSettings, evaluate, make_trainer, task_seed
from cl_compress.engine.system import ContinualSystem
from cl_compress.models import ContinualModel, build_backbone
from cl_compress.rundir.io import load_torch
from cl_compress.strategies import Phase, TrainSettings, get_strategy
from cl_compress.testing import run_quick

EPOCHS, LR, BATCH = 2, 1e-3, 64


def _digits_model(stream, seed: int) -> ContinualModel:
    L.seed_everything(seed, verbose=False)  # as cl_compress.train builds the model
    body, feat = build_backbone("mlp", stream.input_shape, hidden=[32, 32])
    return ContinualModel(body, feat, stream.head_sizes, multi_head=True)


def test_naive_run_equals_plain_pytorch_loop(tmp_path):
    seed = 3
    res = run_quick(tmp_path / "run", [
        "benchmark=split_digits", "benchmark.backend=native", "model.hidden=[32,32]",
        f"train.epochs={EPOCHS}", f"train.lr={LR}", f"train.batch_size={BATCH}", f"seed={seed}",
    ])
    stream = build_stream(BenchmarkSpec("split_digits", backend="native"))
    model = _digits_model(stream, seed)
    R = []
    for t, e in enumerate(stream.experiences):
        model.set_trainable_heads(t)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
        # the runner's loader seed for phase 0 of task t
        loader = make_loader(e.train_x, e.train_y, t, BATCH, shuffle=True,
                             seed=task_seed(seed, t) * 10)
        for _ in range(EPOCHS):
            for x, y, _t in loader:
                opt.zero_grad()
                F.cross_entropy(model(x, t), y).backward()
                opt.step()
        R.append([evaluate(model, s.test_x, s.test_y, j, 1024)
                  for j, s in enumerate(stream.experiences[: t + 1])])
    assert res["acc_matrix"] == R
    assert res["avg_acc"] == pytest.approx(metrics.average_accuracy(R))
    saved = load_torch(tmp_path / "run/checkpoint.pt")["model"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert any(v < 1.0 for row in R for v in row)  # forgetting happened: not a trivial matrix


def test_epoch_statistics_equal_the_loops_own_sums():
    stream = build_stream(BenchmarkSpec("split_digits", backend="native"))
    e = stream.experiences[1]
    model = _digits_model(stream, 0)
    model.set_trainable_heads(1)
    reference = _digits_model(stream, 0)
    reference.set_trainable_heads(1)

    logged: list[dict[str, float]] = []
    strat = get_strategy("naive").from_config({}, TrainSettings(lr=LR))
    strat.setup(model, None)  # type: ignore[arg-type]
    system = ContinualSystem(model, strat, on_epoch_end=logged.append)
    system.set_phase(1, Phase(epochs=EPOCHS, lr=LR))
    make_trainer(TrainerSettings(progress_bar=False), EPOCHS).fit(
        system, make_loader(e.train_x, e.train_y, 1, BATCH, shuffle=True, seed=5))

    opt = torch.optim.Adam([p for p in reference.parameters() if p.requires_grad], lr=LR)
    loader = make_loader(e.train_x, e.train_y, 1, BATCH, shuffle=True, seed=5)
    expected = []
    for _ in range(EPOCHS):
        loss_sum, correct, n = 0.0, 0, 0
        for x, y, _t in loader:
            opt.zero_grad()
            logits = reference(x, 1)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(-1) == y).sum())
            n += len(y)
        expected.append({"train/loss": loss_sum / n, "train/acc": correct / n})
    assert len(logged) == EPOCHS
    for got, want in zip(logged, expected):
        assert got["train/acc"] == pytest.approx(want["train/acc"], abs=1e-6)
        assert got["train/loss"] == pytest.approx(want["train/loss"], rel=1e-5)
    assert expected[1]["train/loss"] < expected[0]["train/loss"]  # it did learn
