"""Training augmentation (batched, seeded, training only) and the data-on-device loader."""

import pytest
import torch

from cl_compress.benchmarks import make_loader
from cl_compress.benchmarks.feed import BatchAugment, TrainFeed, device_loader


def _reference(x, pad, fill, offsets, flips):
    """Per-sample crop and flip written plainly (the batched gather must equal it)."""
    n, c, h, w = x.shape
    out = []
    for i in range(n):
        xp = torch.empty(c, h + 2 * pad, w + 2 * pad)
        xp[:] = torch.tensor(fill).view(c, 1, 1)
        xp[:, pad:pad + h, pad:pad + w] = x[i]
        crop = xp[:, offsets[0, i]:offsets[0, i] + h, offsets[1, i]:offsets[1, i] + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def test_augmentation_is_a_seeded_crop_and_flip():
    x = torch.randn(16, 3, 32, 32)
    fill = (-1.0, -2.0, -3.0)
    aug = BatchAugment(None, seed=7, fill=fill)
    out = aug(x)
    # the same draws, from a generator seeded the same way
    g = torch.Generator().manual_seed(7)
    off = torch.randint(0, 9, (2, 16), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    assert torch.equal(out, _reference(x, 4, fill, off, flips))
    assert 0 < int(flips.sum()) < 16 and bool((off != 4).any())  # it does something
    # the same seed gives the same batches (a resumed run), another seed others
    again = BatchAugment(None, seed=7, fill=fill)
    assert torch.equal(again(x), out) and torch.equal(again(x), aug(x))
    assert not torch.equal(BatchAugment(None, seed=8, fill=fill)(x), out)
    assert BatchAugment(None, 0)(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)  # pad 8


def test_feed_augments_only_when_asked_and_pads_black():
    assert TrainFeed("none").augment(3) is None
    feed = TrainFeed("standard", normalise=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    assert feed.fill == (-2.0, -2.0, -2.0)  # a zero pixel, normalised
    assert isinstance(feed.augment(3), BatchAugment)


def test_on_device_batches_equal_host_batches():
    """The device loader draws the same batches in the same order as make_loader (here on
    the CPU, where a run's feed is a no-op; the device test of bench-gpu runs it on CUDA)."""
    x, y = torch.randn(37, 3, 4, 4), torch.arange(37)
    host = list(make_loader(x, y, 2, 8, shuffle=True, seed=11))
    dev = list(device_loader(x, y, 2, 8, seed=11))
    assert len(host) == len(dev) == 5
    for (hx, hy, ht), (dx, dy, dt) in zip(host, dev, strict=True):
        assert torch.equal(hx, dx) and torch.equal(hy, dy) and ht == dt == 2
    feed = TrainFeed(on_device=True)  # no accelerator: the plain host loader
    loader = feed.loader(x, y, 2, 8, 11)
    assert feed.device is None and type(loader.dataset).__name__ == "TensorTaskDataset"
    assert feed.moved_bytes == 0


def test_augmentation_runs_in_training_only(monkeypatch, tmp_path):
    """A run with benchmark.augment=standard calls the augmentation once per optimiser step
    on training batches and never on evaluation (synthetic defaults to augment=none)."""
    from cl_compress.testing import run_quick

    calls = []
    real = BatchAugment.__call__

    def spy(self, x):
        calls.append(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(BatchAugment, "__call__", spy)
    res = run_quick(tmp_path / "a", ["strategy=naive", "+benchmark.augment=standard",
                                     "train.steps_per_task=3", "train.epochs=null"])
    steps = sum(int(b["train_steps"]) for b in res["budget"]["per_task"])
    assert len(calls) == steps == 9 and all(n <= 32 for n in calls)


@pytest.mark.slow
def test_resume_with_augmentation_equals_an_uninterrupted_run(tmp_path):
    """A stand-in CIFAR-10 run with the standard augmentation, killed after task 1 of 5 and
    resumed, ends with the accuracy matrix of the uninterrupted run (the augmentation is
    seeded per phase from the task seed)."""
    from cl_compress.benchmarks.standin import write_cifar
    from cl_compress.testing import run_quick

    write_cifar("cifar10", tmp_path / "data", per_class=8)
    ov = ["strategy=packnet", "benchmark=split_cifar10", f"benchmark.data_root={tmp_path / 'data'}",
          "benchmark.n_tasks=5", "model=cnn", "model.channels=[8,8]",
          "train.steps_per_task=4", "train.epochs=null", "train.batch_size=16"]
    want = run_quick(tmp_path / "a", ov)
    assert want["stream_source"].startswith("synthetic stand-in")

    def kill(t, model, strategy):
        if t == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_quick(tmp_path / "b", ov, on_task_end=kill)
    got = run_quick(tmp_path / "b", ov + ["resume=true"])
    assert got["acc_matrix"] == want["acc_matrix"]
