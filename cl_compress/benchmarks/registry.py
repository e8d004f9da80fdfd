"""The benchmark registry: ``@register_benchmark(...)`` on a loader makes a benchmark.

A loader is ``fn(spec: BenchmarkSpec, n_tasks: int) -> Loaded | Arrays``. For the ``split``
and ``permuted`` kinds it returns the dataset's arrays ``(x_train, y_train, x_test, y_test)``
(float images ``(N, C, H, W)``, int64 labels) and :func:`cl_compress.benchmarks.build_stream`
cuts them into tasks with ``benchmark.backend`` (Avalanche's generator or the native
splitter); for ``classic`` it returns the experiences already cut. The decorator's keyword
arguments must be literals: ``cl_compress.settings.catalogue`` reads them from the source
without importing torch, so the command line validates a config before any heavy import.

Adding a benchmark: a decorated loader in a module of ``cl_compress/benchmarks/`` (imported
by the package's ``__init__``) and ``cl_compress/configs/benchmark/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cl_compress.settings.catalogue import BenchmarkInfo

LOADERS: dict[str, tuple[BenchmarkInfo, Callable[..., Any]]] = {}


@dataclass
class Loaded:
    """What a loader hands back beyond bare arrays.

    ``arrays``: the dataset (``split``/``permuted`` kinds), or ``experiences`` with
    ``input_shape`` and ``n_classes`` (already cut). ``source`` names where the stream comes
    from (default: the backend that cut it); ``backend`` forces the cutting backend;
    ``meta`` is merged into ``Stream.meta`` (e.g. ``normalise``: per-channel mean and std the
    images were normalised with, which the augmentation's padding needs).
    """

    arrays: tuple | None = None
    experiences: list | None = None
    input_shape: tuple[int, ...] | None = None
    n_classes: int | None = None
    source: str | None = None
    backend: str | None = None
    meta: dict = field(default_factory=dict)


def register_benchmark(**facts: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated loader under ``facts["name"]`` (see :class:`BenchmarkInfo`)."""
    info = BenchmarkInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in facts.items()})

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if info.name in LOADERS and LOADERS[info.name][1] is not fn:
            raise ValueError(f"benchmark {info.name!r} is registered twice")
        LOADERS[info.name] = (info, fn)
        return fn

    return deco
