"""Reference runs of Avalanche 0.6's own strategies on a cl_compress stream.

The Avalanche benchmark is built from the very tensors of our materialised stream
(task labels, classes re-numbered from 0 in each experience), so both frameworks see
the same experiences. Used by ``experiments/bench.py``.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from cl_compress.benchmarks import Stream


def avalanche_benchmark(stream: Stream):
    """A task-incremental Avalanche benchmark with one experience per stream experience."""
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    from cl_compress.benchmarks.avalanche_streams import TargetsDataset, preserved_rng

    train = [TargetsDataset(e.train_x, e.train_y) for e in stream.experiences]
    test = [TargetsDataset(e.test_x, e.test_y) for e in stream.experiences]
    with preserved_rng():
        return nc_benchmark(train, test, n_experiences=stream.n_tasks, task_labels=True,
                            shuffle=False, one_dataset_per_exp=True,
                            class_ids_from_zero_in_each_exp=True)


def multihead_mlp(input_shape: tuple[int, ...], hidden: tuple[int, ...] = (256, 256)) -> nn.Module:
    """Avalanche multi-task MLP: our MLP body + Avalanche's MultiHeadClassifier."""
    from avalanche.models import MultiHeadClassifier, MultiTaskModule

    from cl_compress.models.backbones import mlp

    class MultiHeadMLP(MultiTaskModule):
        def __init__(self):
            super().__init__()
            self.body = mlp(input_shape, hidden)
            self.classifier = MultiHeadClassifier(hidden[-1])

        def forward_single_task(self, x, task_label):
            return self.classifier(self.body(x), task_label)

    return MultiHeadMLP()


def accuracy_matrix(strategy, bench, train_fn) -> tuple[list[list[float]], float]:
    """Train experience by experience with ``train_fn(exp)``; evaluate every seen one."""
    R: list[list[float]] = []
    train_s = 0.0
    for t, exp in enumerate(bench.train_stream):
        t0 = time.perf_counter()
        train_fn(exp)
        train_s += time.perf_counter() - t0
        res = strategy.eval(bench.test_stream[: t + 1])
        row = []
        for j in range(t + 1):
            key = next(k for k in res if k.startswith("Top1_Acc_Exp/eval_phase/test_stream")
                       and k.endswith(f"Exp{j:03d}"))
            row.append(float(res[key]))
        R.append(row)
    return R, train_s


def run_avalanche_naive(stream: Stream, epochs: int, lr: float, batch_size: int,
                        seed: int = 0, reset_optimizer_state: bool = False) -> dict:
    """Avalanche ``Naive`` (multi-head MLP, Adam) on the stream; accuracy matrix + wall time.

    Avalanche 0.6 keeps the optimizer's state (Adam's moments) from one experience to the
    next unless ``make_optimizer(reset_optimizer_state=True)``; cl_compress builds a fresh
    optimizer for every phase. ``reset_optimizer_state=True`` gives Avalanche that protocol.
    """
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.supervised import Naive

    class FreshOptimizerNaive(Naive):
        def make_optimizer(self, **kwargs):
            kwargs["reset_optimizer_state"] = True
            super().make_optimizer(**kwargs)

    torch.manual_seed(seed)
    bench = avalanche_benchmark(stream)
    model = multihead_mlp(stream.input_shape)
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    cls = FreshOptimizerNaive if reset_optimizer_state else Naive
    strategy = cls(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=lr),
                   criterion=nn.CrossEntropyLoss(), train_mb_size=batch_size,
                   train_epochs=epochs, eval_mb_size=1024, device="cpu", evaluator=evaluator)
    t0 = time.perf_counter()
    R, train_s = accuracy_matrix(strategy, bench, strategy.train)
    return {"acc_matrix": R, "wall_seconds": time.perf_counter() - t0, "train_seconds": train_s}


def run_avalanche_replay(stream: Stream, mem_size: int, epochs: int, lr: float, batch_size: int,
                         seed: int = 0, hidden: tuple[int, ...] = (256, 256),
                         sgd_momentum: float | None = None) -> dict:
    """Avalanche ``Replay`` (``mem_size`` stored images, class-balanced buffer of Avalanche
    0.6) with one shared head over all classes, on ``stream`` built with
    ``scenario="class"`` (global labels, no task labels). Adam, ``epochs`` per experience
    (Avalanche trains by epochs; each step also draws a replay mini-batch from the buffer);
    SGD with ``sgd_momentum`` instead when it is given (the issue's anchor protocol)."""
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.supervised import Naive

    from cl_compress.benchmarks.avalanche_streams import TargetsDataset, preserved_rng
    from cl_compress.models.backbones import mlp

    if stream.scenario != "class":
        raise ValueError("run_avalanche_replay needs a class-incremental stream (global labels)")
    train = [TargetsDataset(e.train_x, e.train_y) for e in stream.experiences]
    test = [TargetsDataset(e.test_x, e.test_y) for e in stream.experiences]
    with preserved_rng():
        bench = nc_benchmark(train, test, n_experiences=stream.n_tasks, task_labels=False,
                             shuffle=False, one_dataset_per_exp=True)
    torch.manual_seed(seed)
    model = nn.Sequential(mlp(stream.input_shape, hidden), nn.Linear(hidden[-1], stream.n_classes))
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if sgd_momentum is None
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=sgd_momentum))
    strategy = Naive(model=model, optimizer=opt,
                     criterion=nn.CrossEntropyLoss(), train_mb_size=batch_size,
                     train_epochs=epochs, eval_mb_size=1024, device="cpu", evaluator=evaluator,
                     plugins=[ReplayPlugin(mem_size=mem_size)])
    t0 = time.perf_counter()
    R, train_s = accuracy_matrix(strategy, bench, strategy.train)
    return {"acc_matrix": R, "wall_seconds": time.perf_counter() - t0, "train_seconds": train_s}
