"""The benchmark registry's static facts, read without importing torch.

A benchmark is one loader in ``cl_compress/benchmarks/`` decorated with
``@register_benchmark(name=..., description=..., default_tasks=..., ...)`` (literal keyword
arguments only) plus one YAML in ``cl_compress/configs/benchmark/``. The command line
validates a config before any heavy import, so the facts are read here from the decorators'
source (``ast``, a few milliseconds); ``cl_compress.benchmarks.registry`` builds the same
:class:`BenchmarkInfo` at import time and a test checks both agree.

Also here: the on-disk layouts of the image datasets (which files a folder must hold) and the
cheap check that they are there (:func:`check_data_files`), run before training starts.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cl_compress.errors import DataError

KINDS = ("split", "permuted", "classic")
AUGMENTS = ("standard", "none")


@dataclass(frozen=True)
class BenchmarkInfo:
    """What the registry knows about a benchmark before anything is loaded.

    ``kind``: ``split`` (the loader returns arrays, cut into tasks of consecutive classes),
    ``permuted`` (arrays, one pixel permutation per task) or ``classic`` (the loader cuts the
    experiences itself). ``backends``: the ``benchmark.backend`` values it honours (the first
    is used for any other). ``n_classes``: classes of the dataset when fixed (``n_tasks`` must
    divide it; checked before loading). ``augment``: the default of ``benchmark.augment``.
    ``layout``: a key of :data:`LAYOUTS` when the benchmark reads image files from
    ``benchmark.data_root`` / ``$CLC_DATA`` (checked before training).
    """

    name: str
    description: str
    default_tasks: int
    kind: str = "split"
    backends: tuple[str, ...] = ("avalanche", "native")
    n_classes: int | None = None
    augment: str = "none"
    layout: str | None = None


@dataclass(frozen=True)
class Layout:
    """An on-disk dataset format: the folder a root holds and the files inside it."""

    folder: str
    files: tuple[str, ...]
    kind: str  # "pickle" (CIFAR python batches) | "tree" (TinyImageNet image folders)


LAYOUTS: dict[str, Layout] = {
    "cifar10": Layout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6))
                      + ("test_batch", "batches.meta"), "pickle"),
    "cifar100": Layout("cifar-100-python", ("train", "test", "meta"), "pickle"),
    "tinyimagenet": Layout("tiny-imagenet-200", ("wnids.txt", "train/<wnid>/images/*.JPEG",
                                                  "val/images/*.JPEG", "val/val_annotations.txt"),
                           "tree"),
}
STANDIN_MARKER = "SYNTHETIC_STANDIN"  # written by ``python -m cl_compress.benchmarks.standin``
PICKLE_PROTOCOL_BYTE = 0x80


def _literal_kwargs(call: ast.Call) -> dict:
    out = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError("register_benchmark takes literal keyword arguments only")
        value = ast.literal_eval(kw.value)
        out[kw.arg] = tuple(value) if isinstance(value, list) else value
    return out


@cache
def catalogue() -> dict[str, BenchmarkInfo]:
    """``{name: BenchmarkInfo}`` of every ``@register_benchmark`` in ``cl_compress/benchmarks``,
    in source order (module by module, sorted by file name)."""
    out: dict[str, BenchmarkInfo] = {}
    for path in sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", "") == "register_benchmark":
                    info = BenchmarkInfo(**_literal_kwargs(dec))
                    if info.name in out:
                        raise ValueError(f"benchmark {info.name!r} is registered twice ({path.name})")
                    out[info.name] = info
    return out


def data_roots(data_root: str | None) -> list[Path]:
    """Where image datasets are looked for: ``benchmark.data_root``, else ``$CLC_DATA``, else
    the user cache (``~/.cache/cl_compress``)."""
    if data_root:
        return [Path(data_root)]
    roots = [Path(os.environ["CLC_DATA"])] if os.environ.get("CLC_DATA") else []
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return roots + [Path(base) / "cl_compress"]


def _missing(folder: Path, layout: Layout) -> list[str]:
    """The expected files of ``layout`` that ``folder`` lacks or that are malformed (cheap:
    existence, non-empty, a pickle header for the CIFAR batches)."""
    bad = []
    if layout.kind == "pickle":
        for name in layout.files:
            p = folder / name
            try:
                with open(p, "rb") as f:
                    head = f.read(2)
            except OSError:
                bad.append(name)
                continue
            if len(head) < 2 or head[0] != PICKLE_PROTOCOL_BYTE:
                bad.append(f"{name} (not a pickle)")
        return bad
    if not (folder / "wnids.txt").is_file() or not (folder / "wnids.txt").stat().st_size:
        return list(layout.files)
    if not (folder / "val" / "val_annotations.txt").is_file():
        bad.append("val/val_annotations.txt")
    if not (folder / "val" / "images").is_dir():
        bad.append("val/images/*.JPEG")
    wnids = (folder / "wnids.txt").read_text().split()
    if not all((folder / "train" / w / "images").is_dir() for w in wnids):
        bad.append("train/<wnid>/images/*.JPEG for every wnid in wnids.txt")
    return bad


def find_dataset(layout_name: str, data_root: str | None) -> Path:
    """The folder holding ``layout_name``'s files: ``<root>/<folder>`` or ``<root>`` itself.
    Raises one-line :class:`DataError` naming the folders searched and the files expected."""
    layout = LAYOUTS[layout_name]
    searched: list[Path] = []
    partial: tuple[Path, list[str]] | None = None
    for root in data_roots(data_root):
        for folder in (root / layout.folder, root):
            searched.append(folder)
            if not folder.is_dir():
                continue
            bad = _missing(folder, layout)
            if not bad:
                return folder
            if (folder.name == layout.folder or len(bad) < len(layout.files)) and partial is None:
                partial = (folder, bad)
    if partial is not None:
        folder, bad = partial
        raise DataError(f"{layout_name} files in {folder} are missing or malformed: {', '.join(bad)} "
                        f"(expected {', '.join(layout.files)})")
    where = ", ".join(str(s) for s in searched) or "(no folder: set benchmark.data_root or $CLC_DATA)"
    raise DataError(f"{layout_name} not found: expected {layout.folder}/ with "
                    f"{', '.join(layout.files)} in benchmark.data_root or $CLC_DATA; searched {where}")


def check_data_files(name: str, data_root: str | None) -> None:
    """Before training: a benchmark reading image files finds them (one-line DataError)."""
    info = catalogue().get(name)
    if info is not None and info.layout is not None:
        find_dataset(info.layout, data_root)


def synthetic_suffix(name: str, data_root: str | None = None) -> str:
    """``"-synthetic"`` when ``name`` reads a stand-in folder (its marker file), else ``""``
    (also when the files are missing: the config checks report that). The run folder's name
    carries it (``clc_synthetic`` resolver in train.yaml)."""
    info = catalogue().get(str(name))
    if info is None or info.layout is None:
        return ""
    try:
        folder = find_dataset(info.layout, data_root)
    except DataError:
        return ""
    return "-synthetic" if (folder / STANDIN_MARKER).exists() else ""


def static_builtin_nodes() -> dict[str, dict[str, Any]] | None:
    """The built-in strategies' config nodes read from their source with ``ast`` (no torch
    import, so a config error still answers before torch is loaded): each ``@register(name)``
    class's ``Config`` (nested, ``Config = X`` or inherited) and its fields' defaults (the
    first argument of ``hp(...)`` or a plain literal). None when anything is not statically
    clear; then the strategies are imported. ``tests/test_defaults.py`` checks that the two
    readings agree for every built-in."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "strategies"
    classes: dict[str, ast.ClassDef] = {}
    registered: dict[str, ast.ClassDef] = {}
    for path in sorted(root.glob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if not isinstance(node, ast.ClassDef):
                continue
            classes[node.name] = node
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and getattr(d.func, "id", "") == "register" and d.args \
                        and isinstance(d.args[0], ast.Constant):
                    registered[d.args[0].value] = node

    def config_of(cls: ast.ClassDef) -> ast.ClassDef | str | None:
        for st in cls.body:
            if isinstance(st, ast.ClassDef) and st.name == "Config":
                return st
            if isinstance(st, ast.Assign) and any(getattr(t, "id", "") == "Config" for t in st.targets):
                name = getattr(st.value, "id", None)
                return classes.get(name) if name else None
        bases = [getattr(b, "id", None) for b in cls.bases]
        if bases == ["Strategy"]:
            return "empty"
        if len(bases) == 1 and bases[0] in classes:
            return config_of(classes[bases[0]])
        return None

    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, list | tuple) else v

    out: dict[str, dict[str, Any]] = {}
    for name, cls in registered.items():
        conf = config_of(cls)
        node: dict[str, Any] = {"name": name, "variant": None}
        if conf is None:
            return None
        if isinstance(conf, ast.ClassDef):
            if [getattr(b, "id", None) for b in conf.bases] != ["StrategyConfig"]:
                return None
            for st in conf.body:
                if not isinstance(st, ast.AnnAssign):
                    continue
                if not isinstance(st.target, ast.Name) or st.value is None:
                    return None
                value = st.value
                if isinstance(value, ast.Call):
                    if getattr(value.func, "id", "") != "hp" or not value.args:
                        return None
                    value = value.args[0]
                try:
                    node[st.target.id] = plain(ast.literal_eval(value))
                except ValueError:
                    return None
        out[name] = node
    return out
