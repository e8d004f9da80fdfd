"""Benchmark streams. ``build_stream(spec)`` is the single entry point.

A benchmark is one loader registered with ``@register_benchmark`` (registry.py; the small
datasets in datasets.py, CIFAR and TinyImageNet in images.py) plus one YAML in
``cl_compress/configs/benchmark/``. Array loaders are cut into experiences by Avalanche's
generator (``backend="avalanche"``, the default) or by an equivalent pure-torch splitter
(``backend="native"``, no Avalanche import; tests check both give the same experiences).
``synthetic`` is native only; ``split_mnist`` and ``permuted_mnist`` pass through to
Avalanche's classic streams.
"""

from __future__ import annotations

import torch

from cl_compress.benchmarks import datasets, images  # noqa: F401  (register their loaders)
from cl_compress.benchmarks.base import (  # noqa: F401  (SCENARIOS re-exported)
    SCENARIOS,
    DataError,
    Experience,
    Stream,
    make_loader,
    permuted_tasks,
    split_by_classes,
)
from cl_compress.benchmarks.registry import LOADERS, Loaded, register_benchmark
from cl_compress.benchmarks.sources import load_digits, load_fashion_mnist, make_synthetic  # noqa: F401
from cl_compress.errors import ConfigError
from cl_compress.settings import BACKENDS, BENCHMARKS, EVAL_SPLITS, BenchmarkSpec, validate_spec  # noqa: F401

__all__ = [
    "BENCHMARKS", "BenchmarkSpec", "DataError", "Experience", "Loaded", "Stream", "build_stream",
    "make_loader", "register_benchmark", "validate_spec",
]

def build_stream(spec: BenchmarkSpec) -> Stream:
    """Load the data of ``spec`` through its registered loader and cut it into a stream of
    tensor experiences.

    ``eval_split="val"`` (hyper-parameter tuning): every experience keeps ``1 - val_fraction``
    of its training split for training and evaluates on the held-out rest (seeded by
    ``spec.seed``); the test split is never handed to the splitter nor kept in the stream
    (array loaders pass the training arrays in its place; loaders that cut their own
    experiences load it with the training split and it is dropped here).
    """
    validate_spec(spec)
    info, load = LOADERS[spec.name]
    n_tasks = spec.n_tasks or info.default_tasks
    got = load(spec, n_tasks)
    loaded = got if isinstance(got, Loaded) else Loaded(arrays=got)
    backend = loaded.backend or (spec.backend if spec.backend in info.backends else info.backends[0])
    if loaded.experiences is not None:
        exps, shape, n_cls = loaded.experiences, loaded.input_shape, loaded.n_classes
    else:
        arrays = loaded.arrays
        if spec.eval_split == "val":  # the test split stays out of the stream entirely
            arrays = (arrays[0], arrays[1], arrays[0], arrays[1])
        shape = tuple(arrays[0].shape[1:])
        n_cls = int(arrays[1].max()) + 1
        if info.kind == "permuted":
            exps = _permuted(arrays, n_tasks, spec, n_cls, backend)
        else:
            order = spec.class_order or list(range(n_cls))
            if sorted(order) != list(range(n_cls)):
                raise ConfigError(f"benchmark.class_order must be a permutation of 0..{n_cls - 1}")
            if backend == "avalanche":
                from cl_compress.benchmarks.avalanche_streams import nc_stream

                exps = nc_stream(*arrays, order, n_tasks, spec.scenario)
            else:
                exps = split_by_classes(*arrays, order, n_tasks, spec.scenario)
    if spec.eval_split == "val":
        exps = [_held_out(e, spec) for e in exps]
    _limit(exps, spec)
    meta = {"eval_split": spec.eval_split, "augment": spec.augmentation,
            "on_device": spec.on_device, **loaded.meta}
    stream = Stream(spec.name, spec.scenario, tuple(shape), int(n_cls), exps,
                    source=loaded.source or backend, meta=meta)
    from cl_compress.settings.validate import check_stream

    check_stream(stream)  # shapes across splits, labels, >= 2 classes per task: before training
    return stream


def _held_out(e: Experience, spec: BenchmarkSpec) -> Experience:
    """``e`` training on ``1 - val_fraction`` of its training split and evaluated on the
    rest (the "test" tensors of the returned experience are that held-out part)."""
    reduced, vx, vy = e.split_validation(spec.val_fraction, spec.seed)
    reduced.test_x, reduced.test_y = vx, vy
    return reduced


def _permuted(arrays, n_tasks: int, spec: BenchmarkSpec, n_cls: int, backend: str) -> list[Experience]:
    exps = permuted_tasks(*arrays, n_tasks=n_tasks, seed=spec.seed, n_classes=n_cls)
    if backend == "avalanche":
        from cl_compress.benchmarks.avalanche_streams import per_dataset_stream

        tasks = [(e.train_x, e.train_y, e.test_x, e.test_y) for e in exps]
        exps = per_dataset_stream(tasks, spec.scenario, n_cls)
    return exps


def _limit(exps: list[Experience], spec: BenchmarkSpec) -> None:
    """Deterministically subsample each experience (for quick runs and tests)."""
    for e in exps:
        for split, cap in (("train", spec.max_train_per_task), ("test", spec.max_test_per_task)):
            x, y = getattr(e, f"{split}_x"), getattr(e, f"{split}_y")
            if cap is not None and x.shape[0] > cap:
                g = torch.Generator().manual_seed(spec.seed * 31 + e.task_id)
                idx = torch.randperm(x.shape[0], generator=g)[:cap].sort().values
                setattr(e, f"{split}_x", x[idx])
                setattr(e, f"{split}_y", y[idx])
