"""CIFAR-10, CIFAR-100 and TinyImageNet from their standard on-disk formats (no download).

* CIFAR: the python pickle batches (``cifar-10-batches-py/data_batch_1..5, test_batch,
  batches.meta``; ``cifar-100-python/train, test, meta``), read with an unpickler that only
  builds numpy arrays and builtins (never an arbitrary class).
* TinyImageNet: ``tiny-imagenet-200/wnids.txt``, ``train/<wnid>/images/*.JPEG`` and
  ``val/images/*.JPEG`` with ``val/val_annotations.txt`` (the labelled val split is the test
  split, as in the papers); class ``i`` is the ``i``-th wnid in sorted order.

The folder is ``benchmark.data_root`` (or ``$CLC_DATA``), holding the dataset folder or being
it. Images are float32 ``(N, 3, H, W)`` in ``[0, 1]`` normalised per channel with the
dataset's mean and std (recorded in ``Stream.meta["normalise"]``).

Backends: with ``backend=avalanche`` and files torchvision accepts (its md5 check passes: the
real CIFAR files), the stream is Avalanche's ``SplitCIFAR10``/``SplitCIFAR100``; otherwise the
files are read here and cut by Avalanche's generator (``avalanche``) or the native splitter
(``native``). All give the same experiences (tests/test_images.py). A folder written by
``python -m cl_compress.benchmarks.standin`` carries a marker file: its stream's ``source``
starts with ``synthetic stand-in``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from cl_compress.benchmarks.base import DataError
from cl_compress.benchmarks.registry import Loaded, register_benchmark
from cl_compress.settings.catalogue import LAYOUTS, STANDIN_MARKER, find_dataset

# per-channel mean and std of the training images (the values the papers' recipes use)
NORMALISE = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "bytes"),
}


class _NumpyUnpickler(pickle.Unpickler):
    """Builds only numpy arrays, dtypes and builtins containers: a pickle naming any other
    global is refused (CIFAR's batches need nothing else)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")
        if module.startswith("numpy.core"):  # NumPy 2 moved numpy.core to numpy._core
            try:
                import numpy._core.multiarray  # noqa: F401

                module = module.replace("numpy.core", "numpy._core")
            except ImportError:
                pass
        return super().find_class(module, name)


def load_pickle(path: Path) -> dict:
    """A CIFAR batch as a dict with ``str`` keys; one-line DataError when malformed."""
    try:
        with open(path, "rb") as f:
            obj = _NumpyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError) as e:
        raise DataError(f"{path} is not a readable CIFAR python batch ({type(e).__name__}: {e}); "
                        f"replace it with the file from the dataset's python version") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch(path: Path, label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = load_pickle(path)
    if "data" not in d or label_key not in d:
        raise DataError(f"{path} lacks the keys 'data' and {label_key!r} of a CIFAR batch")
    x, y = np.asarray(d["data"]), np.asarray(d[label_key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or x.shape[0] != y.shape[0]:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072) with N labels, got "
                        f"{x.dtype} {x.shape} and {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{path}: labels outside 0..{n_classes - 1}")
    return x, y


def _images(x: np.ndarray, key: str, side: int) -> torch.Tensor:
    """uint8 ``(N, 3*side*side)`` channel-major rows -> normalised float32 ``(N, 3, side, side)``
    (the arithmetic of torchvision's ToTensor then Normalize)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).reshape(-1, 3, side, side).float().div(255)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISE[key])
    return t.sub_(mean).div_(std)


def read_cifar(layout: str, folder: Path):
    """``(x_train, y_train, x_test, y_test)`` of the CIFAR folder (``layout`` cifar10/100)."""
    if layout == "cifar10":
        parts = [_batch(folder / f"data_batch_{i}", "labels", 10) for i in range(1, 6)]
        x_tr, y_tr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        x_te, y_te = _batch(folder / "test_batch", "labels", 10)
    else:
        x_tr, y_tr = _batch(folder / "train", "fine_labels", 100)
        x_te, y_te = _batch(folder / "test", "fine_labels", 100)
    return (_images(x_tr, layout, 32), torch.from_numpy(y_tr), _images(x_te, layout, 32),
            torch.from_numpy(y_te))


def read_tinyimagenet(folder: Path):
    """``(x_train, y_train, x_val, y_val)`` of a tiny-imagenet-200 folder (64x64 RGB)."""
    from PIL import Image

    wnids = sorted(set((folder / "wnids.txt").read_text().split()))
    index = {w: i for i, w in enumerate(wnids)}

    def read(paths: list[Path]) -> torch.Tensor:
        out = np.empty((len(paths), 64, 64, 3), dtype=np.uint8)
        for i, p in enumerate(paths):
            try:
                with Image.open(p) as im:
                    a = np.asarray(im.convert("RGB"))
            except OSError as e:
                raise DataError(f"{p} is not a readable image ({e})") from e
            if a.shape != (64, 64, 3):
                raise DataError(f"{p} is {a.shape[1]}x{a.shape[0]}, TinyImageNet images are 64x64")
            out[i] = a
        return _images(out.transpose(0, 3, 1, 2).reshape(len(paths), -1), "tinyimagenet", 64)

    tr_paths, tr_y = [], []
    for w in wnids:
        files = sorted((folder / "train" / w / "images").glob("*.JPEG"))
        if not files:
            raise DataError(f"{folder / 'train' / w / 'images'} has no .JPEG images")
        tr_paths += files
        tr_y += [index[w]] * len(files)
    te_paths, te_y = [], []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        cols = line.split("\t")
        if len(cols) < 2 or cols[1] not in index:
            raise DataError(f"{folder / 'val' / 'val_annotations.txt'}: bad line {line[:60]!r} "
                            f"(expected <file>\\t<wnid from wnids.txt>\\t...)")
        te_paths.append(folder / "val" / "images" / cols[0])
        te_y.append(index[cols[1]])
    order = sorted(range(len(te_paths)), key=lambda i: te_paths[i].name)
    te_paths, te_y = [te_paths[i] for i in order], [te_y[i] for i in order]
    return (read(tr_paths), torch.tensor(tr_y), read(te_paths), torch.tensor(te_y))


def _source(folder: Path, base: str) -> str:
    return f"synthetic stand-in ({base})" if (folder / STANDIN_MARKER).exists() else base


def _torchvision_accepts(layout: str, root: Path) -> bool:
    """torchvision's CIFAR classes find the files and their md5 checksums match."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if layout == "cifar10" else CIFAR100
    try:
        return bool(cls(str(root), train=True, download=False)._check_integrity())
    except Exception:  # noqa: BLE001  (any refusal means "use the native reader")
        return False


def _load_cifar(spec, n_tasks: int, layout: str) -> Loaded:
    folder = find_dataset(layout, spec.data_root)
    meta = {"normalise": NORMALISE[layout], "reader": "cifar-pickle"}
    if spec.backend == "avalanche" and folder.name == LAYOUTS[layout].folder \
            and _torchvision_accepts(layout, folder.parent):
        from cl_compress.benchmarks.avalanche_streams import classic_stream

        name = "split_cifar10" if layout == "cifar10" else "split_cifar100"
        exps, shape, n_cls = classic_stream(name, n_tasks, spec.scenario, spec.seed, str(folder.parent),
                                             NORMALISE[layout])
        per = n_cls // n_tasks
        from cl_compress.benchmarks.avalanche_streams import grouped_by_class

        for e in exps:  # original class ids (Avalanche reports remapped ones in TIL)
            e.classes = list(range(e.task_id * per, (e.task_id + 1) * per))
        exps = [grouped_by_class(e, spec.scenario == "task") for e in exps]
        return Loaded(experiences=exps, input_shape=shape, n_classes=n_cls,
                      source=_source(folder, "avalanche-classic"), meta={**meta, "reader": "torchvision"})
    return Loaded(arrays=read_cifar(layout, folder), source=_source(folder, spec.backend), meta=meta)


@register_benchmark(name="split_cifar10", description="CIFAR-10, 5 tasks x 2 classes (local python batches)",
                    default_tasks=5, n_classes=10, augment="standard", layout="cifar10")
def split_cifar10(spec, n_tasks: int) -> Loaded:
    return _load_cifar(spec, n_tasks, "cifar10")


@register_benchmark(name="split_cifar100",
                    description="CIFAR-100, 10 or 20 tasks (local python batches)",
                    default_tasks=10, n_classes=100, augment="standard", layout="cifar100")
def split_cifar100(spec, n_tasks: int) -> Loaded:
    return _load_cifar(spec, n_tasks, "cifar100")


@register_benchmark(name="split_tinyimagenet",
                    description="TinyImageNet 64x64, 10 tasks x 20 classes (local image folders)",
                    default_tasks=10, n_classes=200, augment="standard", layout="tinyimagenet")
def split_tinyimagenet(spec, n_tasks: int) -> Loaded:
    folder = find_dataset("tinyimagenet", spec.data_root)
    return Loaded(arrays=read_tinyimagenet(folder), source=_source(folder, spec.backend),
                  meta={"normalise": NORMALISE["tinyimagenet"], "reader": "image-folder"})
