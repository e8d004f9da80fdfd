import gzip
import struct

import numpy as np
import pytest
import torch

from cl_compress.benchmarks import BenchmarkSpec, build_stream, make_loader, sources
from cl_compress.errors import ConfigError, DataError


@pytest.mark.parametrize("scenario", ["task", "class"])
def test_avalanche_and_native_backends_agree(scenario):
    a = build_stream(BenchmarkSpec("split_digits", scenario=scenario, backend="avalanche"))
    n = build_stream(BenchmarkSpec("split_digits", scenario=scenario, backend="native"))
    assert a.source == "avalanche" and n.source == "native"
    for ea, en in zip(a.experiences, n.experiences, strict=True):
        assert ea.classes == en.classes and ea.n_outputs == en.n_outputs
        for k in ("train_x", "train_y", "test_x", "test_y"):
            assert torch.equal(getattr(ea, k), getattr(en, k)), k


def test_split_covers_every_class_once_and_relabels_for_task_il():
    s = build_stream(BenchmarkSpec("split_digits", scenario="task", backend="native"))
    seen = [c for e in s.experiences for c in e.classes]
    assert sorted(seen) == list(range(10))
    assert all(set(e.train_y.unique().tolist()) == {0, 1} for e in s.experiences)
    c = build_stream(BenchmarkSpec("split_digits", scenario="class", backend="native"))
    assert all(set(e.train_y.unique().tolist()) == set(e.classes) for e in c.experiences)
    assert all(e.n_outputs == 10 for e in c.experiences)


def test_avalanche_generator_does_not_reseed_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_stream(BenchmarkSpec("split_digits", backend="avalanche"))
    assert torch.equal(torch.rand(3), expected)


def test_permuted_task_zero_is_identity_and_others_permute():
    from cl_compress.benchmarks.base import permuted_tasks

    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    y = torch.tensor([0, 1])
    exps = permuted_tasks(x, y, x, y, n_tasks=3, seed=0, n_classes=2)
    assert torch.equal(exps[0].train_x, x)
    for e in exps[1:]:
        assert not torch.equal(e.train_x, x)
        assert torch.equal(e.train_x.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_fashion_mnist_loads_real_files():
    """The real Fashion-MNIST files (`make data`: Debian's dataset-fashion-mnist, or $CLC_DATA);
    `make test` installs nothing, so without them this one test is skipped."""
    try:
        s = build_stream(BenchmarkSpec("split_fmnist", backend="native", max_test_per_task=50))
    except DataError as e:
        pytest.skip(f"Fashion-MNIST not installed here: {str(e).splitlines()[0][:120]}")
    assert s.n_tasks == 5 and s.input_shape == (1, 28, 28)
    assert sum(e.train_x.shape[0] for e in s.experiences) == 60000
    assert all(e.test_x.shape[0] == 50 for e in s.experiences)
    assert 0.0 <= float(s.experiences[0].train_x.min()) and float(s.experiences[0].train_x.max()) <= 1.0


def _write_idx(path, arr: np.ndarray, truncate: int = 0):
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data[: len(data) - truncate]))


def _fake_fmnist(folder, truncate_images: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28)), truncate_images)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(4))
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(2))


def test_truncated_idx_file_is_reported(tmp_path):
    _fake_fmnist(tmp_path, truncate_images=100)
    with pytest.raises(DataError, match="truncated or corrupt"):
        sources.load_fashion_mnist(str(tmp_path), download=False)


def test_corrupt_idx_file_is_reported(tmp_path):
    _fake_fmnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="train-labels"):
        sources.load_fashion_mnist(str(tmp_path), download=False)


def test_missing_data_root_is_reported(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        sources.load_fashion_mnist(str(tmp_path / "nope"), download=False)


def test_missing_data_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FMNIST_DIR", tmp_path / "deb")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CLC_DATA", raising=False)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*CLC_DATA"):
        sources.load_fashion_mnist(None, download=False)


def test_bad_specs_fail_with_choices():
    with pytest.raises(ConfigError, match="split_fmnist"):
        build_stream(BenchmarkSpec("nope"))
    with pytest.raises(ConfigError, match="task, class"):
        build_stream(BenchmarkSpec("synthetic", scenario="domain"))
    with pytest.raises(ConfigError, match="divide"):
        build_stream(BenchmarkSpec("split_digits", n_tasks=3, backend="native"))


def test_loader_serves_whole_batches_in_a_seeded_order():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    a = [b[1].tolist() for b in make_loader(x, y, 2, batch_size=4, shuffle=True, seed=5)]
    b = [b[1].tolist() for b in make_loader(x, y, 2, batch_size=4, shuffle=True, seed=5)]
    assert a == b and sorted(sum(a, [])) == list(range(10)) and [len(v) for v in a] == [4, 4, 2]
    xb, yb, t = next(iter(make_loader(x, y, 2, batch_size=4, shuffle=False)))
    assert t == 2 and torch.equal(xb[:, 0], yb.float())


def test_permuted_backends_agree(tmp_path):
    """On files in Fashion-MNIST's exact idx format (synthetic pixels: `make test` needs no data)."""
    rng = np.random.default_rng(0)
    tmp_path.mkdir(exist_ok=True)
    for split, n in (("train", 200), ("t10k", 100)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    spec = dict(name="permuted_fmnist", n_tasks=2, max_test_per_task=None,  # task 1 is permuted
                data_root=str(tmp_path))
    a = build_stream(BenchmarkSpec(**spec, backend="avalanche"))
    n = build_stream(BenchmarkSpec(**spec, backend="native"))
    for ea, en in zip(a.experiences, n.experiences, strict=True):
        assert ea.classes == en.classes == list(range(10)) and ea.n_outputs == en.n_outputs == 10
        for k in ("train_x", "train_y", "test_x", "test_y"):
            assert torch.equal(getattr(ea, k), getattr(en, k)), (ea.task_id, k)


def test_split_fmnist32_pads_normalises_and_augments_by_default(monkeypatch):
    """split_fmnist32: Fashion-MNIST's 28x28 images zero-padded to 32x32, then normalised with
    the dataset's mean and std (recorded for the augmentation's black padding); crop+flip
    augmentation is its default. The idx reader is replaced by small arrays."""
    import torch

    import cl_compress.benchmarks as B
    from cl_compress.benchmarks.datasets import FMNIST_NORMALISE

    g = torch.Generator().manual_seed(0)
    ytr, yte = torch.arange(100) % 10, torch.arange(50) % 10
    xtr, xte = torch.rand(100, 1, 28, 28, generator=g), torch.rand(50, 1, 28, 28, generator=g)
    monkeypatch.setattr(B, "load_fashion_mnist", lambda root, download: (xtr, ytr, xte, yte))
    spec = B.BenchmarkSpec(name="split_fmnist32", backend="native")
    stream = B.build_stream(spec)
    (mean,), (std,) = FMNIST_NORMALISE
    e = stream.experiences[0]
    assert stream.input_shape == (1, 32, 32) and len(stream.experiences) == 5
    assert stream.meta["augment"] == "standard" and stream.meta["normalise"] == FMNIST_NORMALISE
    assert torch.allclose(e.train_x[:, :, :2, :], torch.full_like(e.train_x[:, :, :2, :], -mean / std))
    inner = ((xtr[ytr < 2] - mean) / std).flatten(1)
    got = e.train_x[:, :, 2:30, 2:30].flatten(1)
    assert got.shape == inner.shape  # the same images, in the splitter's order
    assert torch.allclose(got[got[:, 0].argsort()], inner[inner[:, 0].argsort()], atol=1e-6)
