"""How a task's training data reaches the training step: the loader (on the host, or on the
accelerator when the task's tensors fit) and the batch augmentation.

* :class:`BatchAugment` (``benchmark.augment=standard``): the standard training augmentation
  of the CIFAR-style recipes as batched tensor operations on the batch's own device (no PIL,
  no per-sample Python): pad by ``side / 8`` pixels (4 for 32x32 CIFAR, 8 for 64x64
  TinyImageNet) with black (the normalised value of a zero pixel, as torchvision's
  ``RandomCrop(padding=...)`` before ``Normalize``), crop back to the image size at a random
  offset, flip horizontally with probability 1/2. It draws from its own generator, seeded
  per phase from the run's task seed (the phase loader's seed), so a resumed run, which
  restarts at a task boundary, sees the same augmented batches. Evaluation never sees it:
  only ``ContinualSystem.training_step`` applies it.
* :meth:`TrainFeed.loader` (``benchmark.on_device``): ``auto`` moves a task's training
  tensors to the accelerator once when they take less than ``DEVICE_FRACTION`` of its free
  memory, ``true`` always (on an accelerator), ``false`` never; batches are then gathered on
  the device (only the batch's indices cross from the host). On CPU it is a no-op. The batch
  order is that of :func:`~cl_compress.benchmarks.base.make_loader` with the same seed in
  every case (the same sampler and generator).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from cl_compress.benchmarks.base import TensorTaskDataset, _batch_passthrough, make_loader

DEVICE_FRACTION = 0.25


class BatchAugment:
    """Random crop with padding and horizontal flip of an ``(N, C, H, W)`` batch (see the
    module doc). ``pad``: pixels on each side (None: ``round(width / 8)``, 4 for 32x32, 8 for
    64x64); ``fill``: per-channel padding value (default 0)."""

    def __init__(self, pad: int | None, seed: int, fill: tuple[float, ...] | None = None,
                 flip: bool = True):
        self.pad, self.seed, self.flip = pad, int(seed), flip
        self.fill = fill
        self._gen: torch.Generator | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def __call__(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        p, dev = self.pad if self.pad is not None else max(1, round(w / 8)), x.device
        g = self._generator(dev)
        off = torch.randint(0, 2 * p + 1, (2, n), generator=g, device=dev)
        flip = torch.rand(n, generator=g, device=dev) < 0.5 if self.flip else None
        if self.fill is None:
            xp = torch.nn.functional.pad(x, (p, p, p, p))
        else:
            xp = torch.tensor(self.fill, dtype=x.dtype, device=dev).view(1, c, 1, 1).expand(
                n, c, h + 2 * p, w + 2 * p).clone()
            xp[:, :, p:p + h, p:p + w] = x
        rows = off[0][:, None] + torch.arange(h, device=dev)
        cols = off[1][:, None] + torch.arange(w, device=dev)
        if flip is not None:  # the flip is folded into the gather: read the columns backwards
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        # one gather over each padded plane (an index shared by the channels: 7x faster on CPU
        # than indexing with four broadcast index tensors)
        lin = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
        return xp.flatten(2).gather(2, lin).view(n, c, h, w)


class DeviceTaskDataset(TensorTaskDataset):
    """:class:`TensorTaskDataset` over tensors already on the accelerator: a batch is one
    gather there (the indices are the only thing copied from the host)."""

    def __getitems__(self, idx: list[int]):
        index = torch.as_tensor(idx, dtype=torch.long).to(self.x.device, non_blocking=True)
        return self.x[index], self.y[index], self.task_id


def device_loader(x: Tensor, y: Tensor, task_id: int, batch_size: int, seed: int) -> DataLoader:
    """``make_loader(..., shuffle=True, seed=seed)`` over device tensors: the same sampler
    and generator, so the same batches in the same order."""
    return DataLoader(DeviceTaskDataset(x, y, task_id), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed),
                      collate_fn=_batch_passthrough, num_workers=0)


def training_device(accelerator: str, devices: Any) -> torch.device | None:
    """The CUDA device this process trains on, or None (CPU, MPS: the feed is a no-op)."""
    if str(accelerator).lower() not in ("gpu", "cuda", "auto") or not torch.cuda.is_available():
        return None
    local = int(os.environ.get("LOCAL_RANK", 0))
    if isinstance(devices, list | tuple) and devices:
        return torch.device("cuda", int(devices[local % len(devices)]))
    return torch.device("cuda", local)


class TrainFeed:
    """Loaders and augmentation of a stream's training data (built once per run).

    ``augment``: ``standard`` | ``none``; ``on_device``: ``auto`` | True | False;
    ``normalise``: the per-channel (mean, std) the images carry (padding is black).
    """

    def __init__(self, augment: str = "none", on_device: bool | str = "auto",
                 normalise: tuple | None = None, device: torch.device | None = None):
        self.kind, self.on_device, self.device = augment, on_device, device
        self.fill = None if normalise is None else tuple(-m / s for m, s in zip(*normalise))
        self._src: Tensor | None = None
        self._dev: tuple[Tensor, Tensor] | None = None
        self.moved_bytes = 0  # bytes copied to the device by this feed (once per task)

    @classmethod
    def of(cls, stream, trainer) -> TrainFeed:
        """From ``stream.meta`` (``augment``, ``on_device``, ``normalise``) and the trainer
        settings (accelerator, devices)."""
        m = stream.meta
        return cls(m.get("augment", "none"), m.get("on_device", "auto"), m.get("normalise"),
                   training_device(getattr(trainer, "accelerator", "cpu"), getattr(trainer, "devices", 1)))

    def augment(self, seed: int) -> BatchAugment | None:
        """A fresh augmentation seeded with ``seed`` (None with ``augment=none``)."""
        if self.kind != "standard":
            return None
        return BatchAugment(None, seed, self.fill)

    def fits(self, x: Tensor, y: Tensor) -> bool:
        if self.device is None or self.on_device is False:
            return False
        if self.on_device is True:
            return True
        free, _ = torch.cuda.mem_get_info(self.device)
        return (x.nbytes + y.nbytes) < DEVICE_FRACTION * free

    def loader(self, x: Tensor, y: Tensor, task_id: int, batch_size: int, seed: int) -> DataLoader:
        """The shuffled training loader of a task (seeded exactly as ``make_loader``)."""
        if not self.fits(x, y):
            return make_loader(x, y, task_id, batch_size, shuffle=True, seed=seed)
        if self._src is not x:  # a new task: copy once, free the previous task's copy
            self._dev = None
            self._dev = (x.to(self.device), y.to(self.device))
            self._src = x
            self.moved_bytes += x.nbytes + y.nbytes
        assert self._dev is not None
        return device_loader(*self._dev, task_id, batch_size, seed)

