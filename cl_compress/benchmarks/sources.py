"""Local data sources: Fashion-MNIST idx files, scikit-learn digits, a synthetic set.

Each loader returns ``(x_train, y_train, x_test, y_test)`` as float32 images in
``[0, 1]`` shaped ``(N, C, H, W)`` and int64 labels.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cl_compress.benchmarks.base import DataError

FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_HINT = (
    "Fashion-MNIST was not found. Either install the Debian package "
    "(`sudo apt-get install dataset-fashion-mnist`, files land in {deb}), or put the four "
    "idx files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in a folder and set "
    "CLC_DATA=<that folder> (or benchmark.data_root=<folder>). Searched: {searched}."
)

Arrays = tuple[Tensor, Tensor, Tensor, Tensor]


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cl_compress"


def _candidate_dirs(data_root: str | None) -> list[Path]:
    roots = [Path(data_root)] if data_root else []
    if os.environ.get("CLC_DATA"):
        roots.append(Path(os.environ["CLC_DATA"]))
    roots += [user_cache_dir(), DEBIAN_FMNIST_DIR]
    out = []
    for r in roots:
        out += [r, r / "fashion-mnist", r / "FashionMNIST" / "raw"]
    return out


def _find(dirpath: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (dirpath / name).is_file():
            return dirpath / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped); raise DataError if corrupt or truncated."""
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}. Re-install or re-download the file.") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not a uint8 idx file (bad magic number); it is corrupt.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header incomplete).")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: expected {expected} data bytes for shape "
            f"{dims}, found {len(raw) - header}."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _try_download(dest: Path) -> Path | None:
    """Download Fashion-MNIST through torchvision; None when offline."""
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(dest), train=True, download=True)
        FashionMNIST(str(dest), train=False, download=True)
    except Exception:  # offline, proxy, SSL: any failure means "not available"
        return None
    return dest / "FashionMNIST" / "raw"


def load_fashion_mnist(data_root: str | None = None, download: bool = True) -> Arrays:
    """Fashion-MNIST from ``data_root``, ``$CLC_DATA``, the user cache or the Debian package."""
    if data_root and not Path(data_root).is_dir():
        raise DataError(f"data_root={data_root!r} does not exist or is not a directory.")
    searched = _candidate_dirs(data_root)
    folder = next((d for d in searched if _find(d, FMNIST_FILES["train_x"])), None)
    if folder is None and download:
        folder = _try_download(user_cache_dir())
    if folder is None:
        raise DataError(FMNIST_HINT.format(deb=DEBIAN_FMNIST_DIR, searched=[str(s) for s in searched]))
    arrays = {}
    for key, stem in FMNIST_FILES.items():
        path = _find(folder, stem)
        if path is None:
            raise DataError(f"{folder} has some Fashion-MNIST files but not {stem}[.gz].")
        arrays[key] = read_idx(path)
    if arrays["train_x"].shape[0] != arrays["train_y"].shape[0] or (
        arrays["test_x"].shape[0] != arrays["test_y"].shape[0]
    ):
        raise DataError(f"Fashion-MNIST files in {folder} disagree on the number of samples.")
    if arrays["train_y"].max() > 9 or arrays["test_y"].max() > 9:
        raise DataError(f"Fashion-MNIST labels in {folder} are outside 0..9; files are corrupt.")

    def img(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)

    def lab(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return img(arrays["train_x"]), lab(arrays["train_y"]), img(arrays["test_x"]), lab(arrays["test_y"])


def load_digits(test_fraction: float = 0.3, seed: int = 0) -> Arrays:
    """scikit-learn's 8x8 digits (1797 images), split per class into train/test, seeded."""
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    return _stratified_split(x, y, test_fraction, seed)


def make_synthetic(
    n_classes: int = 10, per_class: int = 60, side: int = 8, noise: float = 0.6, seed: int = 0
) -> Arrays:
    """Gaussian class prototypes rendered as ``(1, side, side)`` images; learnable in seconds."""
    g = torch.Generator().manual_seed(seed)
    d = side * side
    protos = torch.randn(n_classes, d, generator=g)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = protos[y] + noise * torch.randn(len(y), d, generator=g)
    x = x.reshape(-1, 1, side, side)
    return _stratified_split(x, y, 1 / 3, seed)


def _stratified_split(x: Tensor, y: Tensor, test_fraction: float, seed: int) -> Arrays:
    g = torch.Generator().manual_seed(seed)
    tr, te = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * test_fraction))
        te.append(idx[:k])
        tr.append(idx[k:])
    tr_i, te_i = torch.cat(tr).sort().values, torch.cat(te).sort().values
    return x[tr_i], y[tr_i], x[te_i], y[te_i]
