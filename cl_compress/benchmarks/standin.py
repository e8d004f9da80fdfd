"""A format-exact stand-in for CIFAR-10, CIFAR-100 and TinyImageNet (synthetic images).

``python -m cl_compress.benchmarks.standin {cifar10,cifar100,tinyimagenet} DIR [--per-class N]``
writes ``DIR/cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``),
``DIR/cifar-100-python`` (``train``, ``test``, ``meta``) or ``DIR/tiny-imagenet-200``
(``wnids.txt``, ``words.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG``,
``val/val_annotations.txt``): the files and encodings of the real datasets, so the real
readers, transforms and models run without them (``make test``, CPU benchmarks). Then run
with ``benchmark.data_root=DIR``.

The images are learnable: every class has a seeded pattern (a coloured oriented grating
plus a bright blob at a class-dependent place), drawn with a random shift, contrast and
pixel noise per image, so a conv net separates the classes and a random crop or flip does
not erase them. The folder carries a ``SYNTHETIC_STANDIN`` marker file: streams read from it
have ``source = "synthetic stand-in (...)"`` and runs on it are named and reported synthetic.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

from cl_compress.settings.catalogue import LAYOUTS, STANDIN_MARKER

N_CLASSES = {"cifar10": 10, "cifar100": 100, "tinyimagenet": 200}
SIDE = {"cifar10": 32, "cifar100": 32, "tinyimagenet": 64}


def synthetic_images(labels: np.ndarray, n_classes: int, side: int, seed: int) -> np.ndarray:
    """uint8 ``(N, side, side, 3)`` images of ``labels``' class patterns (see module doc)."""
    cls_rng = np.random.default_rng(12345 + n_classes)  # the class patterns: fixed per dataset
    angle = cls_rng.uniform(0, np.pi, n_classes)
    freq = cls_rng.uniform(1.5, 4.0, n_classes) * 2 * np.pi / side
    colour = cls_rng.uniform(0.15, 0.85, (n_classes, 3))
    colour2 = cls_rng.uniform(0.15, 0.85, (n_classes, 3))
    blob = cls_rng.uniform(0.25, 0.75, (n_classes, 2)) * side
    rng = np.random.default_rng(seed)
    n = len(labels)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    shift = rng.uniform(-2, 2, (n, 2))
    ys, xs = yy[None] - shift[:, 0, None, None], xx[None] - shift[:, 1, None, None]
    a, f = angle[labels][:, None, None], freq[labels][:, None, None]
    wave = 0.5 + 0.5 * np.sin(f * (np.cos(a) * xs + np.sin(a) * ys) + rng.uniform(0, 0.5, (n, 1, 1)))
    w = wave[..., None]
    img = w * colour[labels][:, None, None] + (1 - w) * colour2[labels][:, None, None]
    d2 = (ys - blob[labels][:, 0, None, None]) ** 2 + (xs - blob[labels][:, 1, None, None]) ** 2
    img += 0.5 * np.exp(-d2 / (2 * (side / 10) ** 2))[..., None]
    img = img * rng.uniform(0.8, 1.2, (n, 1, 1, 1)) + rng.normal(0, 0.08, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _rows(img: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` -> CIFAR's ``(N, 3072)`` rows (channel-major: R plane, G, B)."""
    return np.ascontiguousarray(img.transpose(0, 3, 1, 2).reshape(len(img), -1))


def _dump(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the real batches are protocol-2 pickles


def write_cifar(kind: str, out: Path, per_class: int, seed: int = 0) -> Path:
    n_cls = N_CLASSES[kind]
    folder = out / LAYOUTS[kind].folder
    folder.mkdir(parents=True, exist_ok=True)
    n_test = max(2, per_class // 5)
    rng = np.random.default_rng(seed)
    y_tr = rng.permutation(np.repeat(np.arange(n_cls), per_class))
    y_te = rng.permutation(np.repeat(np.arange(n_cls), n_test))
    x_tr = _rows(synthetic_images(y_tr, n_cls, 32, seed + 1))
    x_te = _rows(synthetic_images(y_te, n_cls, 32, seed + 2))
    if kind == "cifar10":
        names = [f"airplane{i}" for i in range(10)]
        for b, idx in enumerate(np.array_split(np.arange(len(y_tr)), 5), start=1):
            _dump({"batch_label": f"training batch {b} of 5", "labels": y_tr[idx].tolist(),
                   "data": x_tr[idx], "filenames": [f"img_{i}.png" for i in idx]},
                  folder / f"data_batch_{b}")
        _dump({"batch_label": "testing batch 1 of 1", "labels": y_te.tolist(), "data": x_te,
               "filenames": [f"test_{i}.png" for i in range(len(y_te))]}, folder / "test_batch")
        _dump({"num_cases_per_batch": len(y_tr) // 5, "label_names": names, "num_vis": 3072},
              folder / "batches.meta")
    else:
        for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
            _dump({"filenames": [f"{split}_{i}.png" for i in range(len(y))], "batch_label": split,
                   "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": x},
                  folder / split)
        _dump({"fine_label_names": [f"class{i}" for i in range(100)],
               "coarse_label_names": [f"super{i}" for i in range(20)]}, folder / "meta")
    _mark(folder, kind, per_class)
    return folder


def write_tinyimagenet(out: Path, per_class: int, seed: int = 0) -> Path:
    from PIL import Image

    folder = out / LAYOUTS["tinyimagenet"].folder
    wnids = [f"n{10000000 + 7919 * i:08d}" for i in range(200)]
    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\tsynthetic class {i}\n" for i, w in enumerate(wnids)))
    index = {w: i for i, w in enumerate(sorted(wnids))}
    n_val = max(1, per_class // 5)
    for w in wnids:
        d = folder / "train" / w / "images"
        d.mkdir(parents=True, exist_ok=True)
        imgs = synthetic_images(np.full(per_class, index[w]), 200, 64, seed + index[w])
        for i, a in enumerate(imgs):
            Image.fromarray(a).save(d / f"{w}_{i}.JPEG", format="JPEG", quality=95)
        (folder / "train" / w / f"{w}_boxes.txt").write_text(
            "".join(f"{w}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(per_class)))
    lines = []
    labels = np.repeat(np.arange(200), n_val)
    imgs = synthetic_images(labels, 200, 64, seed + 1000)
    by_index = sorted(wnids)
    for k, (lab, a) in enumerate(zip(labels, imgs)):
        name = f"val_{k}.JPEG"
        Image.fromarray(a).save(folder / "val" / "images" / name, format="JPEG", quality=95)
        lines.append(f"{name}\t{by_index[lab]}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    _mark(folder, "tinyimagenet", per_class)
    return folder


def _mark(folder: Path, kind: str, per_class: int) -> None:
    (folder / STANDIN_MARKER).write_text(
        f"synthetic stand-in for {kind} written by python -m cl_compress.benchmarks.standin "
        f"({per_class} training images per class): not the real dataset\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cl_compress.benchmarks.standin",
                                description="Write a small synthetic dataset in the exact on-disk "
                                            "format of CIFAR-10, CIFAR-100 or TinyImageNet.")
    p.add_argument("kind", choices=sorted(N_CLASSES))
    p.add_argument("dir", type=Path)
    p.add_argument("--per-class", type=int, default=None,
                   help="training images per class (default 50; TinyImageNet 10)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    per = a.per_class or (10 if a.kind == "tinyimagenet" else 50)
    if per < 1:
        p.error("--per-class must be >= 1")
    folder = (write_tinyimagenet(a.dir, per, a.seed) if a.kind == "tinyimagenet"
              else write_cifar(a.kind, a.dir, per, a.seed))
    print(f"wrote a synthetic {a.kind} stand-in to {folder}; run with benchmark.data_root={a.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
