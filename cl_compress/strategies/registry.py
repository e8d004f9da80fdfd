"""Strategy registry: built-ins register with ``@register``; other packages through the
``cl_compress.strategies`` entry-point group or an import path ``"pkg.module:Class"``."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from cl_compress.errors import ConfigError
from cl_compress.strategies.base import Strategy

_REGISTRY: dict[str, type[Strategy]] = {}
ENTRY_POINT_GROUP = "cl_compress.strategies"


def register(name: str):
    """Class decorator: make a ``Strategy`` subclass available under ``name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"@register({name!r}) needs a Strategy subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"strategy name {name!r} is already registered by {_REGISTRY[name]!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    from cl_compress.strategies import builtin  # noqa: F401  (imports every built-in strategy module)


def _entry_point_strategies() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def builtin_names() -> list[str]:
    """Names of the strategies shipped with cl_compress (each has a config file)."""
    _load_builtins()
    return sorted(n for n, c in _REGISTRY.items() if c.__module__.startswith("cl_compress."))


def available() -> dict[str, str]:
    """Every known strategy name with its one-line description."""
    _load_builtins()
    out = {n: c.description for n, c in _REGISTRY.items()}
    for name in _entry_point_strategies():
        out.setdefault(name, "(entry point)")
    return dict(sorted(out.items()))


def resolve_registered(name: str) -> type[Strategy]:
    """Resolve ``name`` through the registry and the entry points only, never by import path.

    For names read from data files (``results.json``, ``sweep.json``, checkpoints): a file
    from elsewhere must not decide which module is imported."""
    _load_builtins()
    if not isinstance(name, str):
        raise ConfigError(f"strategy name {name!r} is not a string")
    if name in _REGISTRY:
        return _REGISTRY[name]
    eps = _entry_point_strategies()
    if name not in eps:
        raise ConfigError(
            f"strategy {name!r} is neither registered nor an installed entry point "
            f"(known: {', '.join(available())}); names read from run files are never imported "
            f"as a path")
    cls = eps[name].load()  # type: ignore[attr-defined]
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"{name!r} does not name a cl_compress Strategy subclass")
    return cls


def get_strategy(name: str) -> type[Strategy]:
    """Resolve a registered name, an entry-point name, or ``module:Class``.

    The class is returned as it is (a lookup changes nothing, so lookups in any order agree);
    build with ``get_strategy(name).from_config(params, train, name=name)`` so the run is
    named by what was asked for."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    eps = _entry_point_strategies()
    if name in eps:
        cls = eps[name].load()  # type: ignore[attr-defined]
    elif ":" in name:
        mod, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"cannot import strategy {name!r}: {e}") from e
    else:
        raise ConfigError(
            f"unknown strategy {name!r}; choose one of: {', '.join(available())} "
            f"(or give an import path 'package.module:Class')"
        )
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"{name!r} does not name a cl_compress Strategy subclass")
    return cls  # never mutated: the instance gets the given name (Strategy.from_config)
