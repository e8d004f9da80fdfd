"""The registered loaders of the small benchmarks (Fashion-MNIST, digits, synthetic, and
Avalanche's classic MNIST streams). The CIFAR and TinyImageNet ones are in ``images.py``."""

from __future__ import annotations

import sys

from cl_compress.benchmarks.registry import Loaded, register_benchmark


def _source(name: str):
    """``cl_compress.benchmarks.<name>`` (``load_digits``, ``load_fashion_mnist``,
    ``make_synthetic``, re-exported from sources.py), looked up on the package at call time
    so a test can substitute it there (tests/test_tune.py poisons the digits' test split)."""
    return getattr(sys.modules["cl_compress.benchmarks"], name)


@register_benchmark(name="split_fmnist", description="Fashion-MNIST, 5 tasks x 2 classes (local files)",
                    default_tasks=5, n_classes=10)
def split_fmnist(spec, n_tasks: int):
    return _source("load_fashion_mnist")(spec.data_root, spec.download)


FMNIST_NORMALISE = ((0.2860,), (0.3530,))  # mean and std of Fashion-MNIST's training pixels


@register_benchmark(name="split_fmnist32",
                    description="Fashion-MNIST padded to 32x32 and normalised, 5 tasks x 2 classes, "
                                "crop+flip augmentation (conv nets; local files)",
                    default_tasks=5, n_classes=10, augment="standard")
def split_fmnist32(spec, n_tasks: int) -> Loaded:
    """Fashion-MNIST as a CIFAR-sized conv-net benchmark: each 28x28 image zero-padded by 2
    pixels on every side (the usual MNIST-to-32 recipe), then normalised with the dataset's
    mean and std; the standard augmentation (4-pixel crop, flip) applies by default."""
    import torch.nn.functional as F

    mean, std = (v[0] for v in FMNIST_NORMALISE)
    xtr, ytr, xte, yte = _source("load_fashion_mnist")(spec.data_root, spec.download)

    def fit(x):
        return F.pad(x, (2, 2, 2, 2)).sub_(mean).div_(std)

    return Loaded(arrays=(fit(xtr), ytr, fit(xte), yte), meta={"normalise": FMNIST_NORMALISE})


@register_benchmark(name="permuted_fmnist",
                    description="Fashion-MNIST, N tasks of pixel permutations, task 0 unpermuted",
                    default_tasks=5, kind="permuted")
def permuted_fmnist(spec, n_tasks: int):
    return _source("load_fashion_mnist")(spec.data_root, spec.download)


@register_benchmark(name="split_digits",
                    description="scikit-learn 8x8 digits, 5 tasks x 2 classes (always available)",
                    default_tasks=5, n_classes=10)
def split_digits(spec, n_tasks: int):
    return _source("load_digits")(seed=spec.seed)


@register_benchmark(name="synthetic",
                    description="tiny Gaussian-prototype images, 3 tasks x 2 classes (tests)",
                    default_tasks=3, backends=("native",))
def synthetic(spec, n_tasks: int):
    return _source("make_synthetic")(n_classes=2 * n_tasks, seed=spec.seed)


def _classic(spec, n_tasks: int) -> Loaded:
    from cl_compress.benchmarks.avalanche_streams import classic_stream

    exps, shape, n_cls = classic_stream(spec.name, n_tasks, spec.scenario, spec.seed, spec.data_root)
    return Loaded(experiences=exps, input_shape=shape, n_classes=n_cls, source="avalanche-classic")


@register_benchmark(name="split_mnist", description="Avalanche SplitMNIST (downloads MNIST)",
                    default_tasks=5, kind="classic", backends=("avalanche",))
def split_mnist(spec, n_tasks: int) -> Loaded:
    return _classic(spec, n_tasks)


@register_benchmark(name="permuted_mnist", description="Avalanche PermutedMNIST (downloads MNIST)",
                    default_tasks=10, kind="classic", backends=("avalanche",))
def permuted_mnist(spec, n_tasks: int) -> Loaded:
    return _classic(spec, n_tasks)
