"""Strategy registry: built-ins register with ``@register``; other packages through the
``cl_compress.strategies`` entry-point group, the modules named in ``$CLC_STRATEGY_MODULES``
(imported, so their ``@register`` runs: no installation needed) or an import path
``"pkg.module:Class"``.

Every command resolves a strategy name here (train, sweep, tune, presets, the report), so a
plugin is accepted wherever a built-in is."""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

from cl_compress.errors import ConfigError
from cl_compress.strategies.base import Strategy

_REGISTRY: dict[str, type[Strategy]] = {}
ENTRY_POINT_GROUP = "cl_compress.strategies"
MODULES_ENV = "CLC_STRATEGY_MODULES"  # comma/space-separated modules that @register strategies


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

    for mod in os.environ.get(MODULES_ENV, "").replace(",", " ").split():
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"{MODULES_ENV}: cannot import {mod!r}: {e}") from e


def _entry_point_strategies() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def builtin_names() -> list[str]:
    """Names of the strategies shipped with cl_compress."""
    _load_builtins()
    return sorted(n for n, c in _REGISTRY.items() if c.__module__.startswith("cl_compress."))


def registered_names() -> list[str]:
    """Every strategy a name selects: the built-ins, ``@register``-ed plugins and entry points
    (what ``strategies: all`` and ``make compare`` mean)."""
    _load_builtins()
    return sorted(set(_REGISTRY) | set(_entry_point_strategies()))


def available() -> dict[str, str]:
    """Every known strategy name with its one-line description (an entry point is loaded to
    read it; one that fails to load says so)."""
    _load_builtins()
    out = {n: c.description for n, c in _REGISTRY.items()}
    for name in _entry_point_strategies():
        if name not in out:
            try:
                out[name] = get_strategy(name).description or "(no description)"
            except Exception as e:  # a broken plugin is listed with its error, not hidden
                out[name] = f"(entry point failed to load: {type(e).__name__}: {e})"
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


def loadable() -> dict[str, type[Strategy]]:
    """``{name: class}`` of every registered strategy that loads; an entry point that fails
    to import is reported on stderr once and left out (``strategy=<it>`` then fails with
    the import error, see :func:`get_strategy`)."""
    out = {}
    for name in registered_names():
        try:
            out[name] = get_strategy(name)
        except Exception as e:
            if name not in _WARNED:
                _WARNED.add(name)
                print(f"warning: strategy entry point {name!r} failed to load: "
                      f"{type(e).__name__}: {e}", file=sys.stderr)
    return out


_WARNED: set[str] = set()


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
        try:
            cls = eps[name].load()  # type: ignore[attr-defined]
        except Exception as e:
            raise ConfigError(f"strategy entry point {name!r} ({eps[name].value}) failed to "  # type: ignore[attr-defined]
                              f"load: {type(e).__name__}: {e}") from e
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
