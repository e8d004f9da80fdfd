"""Compose the Hydra config in-process: the one place that turns overrides into the plain
dict ``python -m cl_compress.train <overrides>`` runs with (used by evaluate_artifact, sweep, tune,
the experiment scripts and the tests), and the one place the ``strategy`` config group is
made: :func:`register_strategy_configs` generates ``strategy/<name>`` for every registered
strategy (built-in, entry point, ``$CLC_STRATEGY_MODULES``) from its ``Config`` dataclass in
Hydra's ConfigStore, so each default is stated once (in the dataclass) and a plugin's
hyper-parameters are overridden like a built-in's (``strategy=ewc strategy.lam=10``, no
``+``). A YAML file ``configs/strategy/<name>.yaml`` may still exist; it then holds only
what differs from the dataclass (``defaults: [_<name>_defaults, _self_]`` plus the changes;
``tests/test_defaults.py``).

Imports Hydra and OmegaConf only (no torch, no Lightning) until a strategy config is
registered (that imports the strategies)."""

from __future__ import annotations

import dataclasses
from typing import Any

from cl_compress.settings.catalogue import static_builtin_nodes  # noqa: F401  (re-exported)

CONFIG_MODULE = "cl_compress.configs"
LABEL_KEYS = ("name", "variant")  # in every strategy node, not hyper-parameters
_REGISTERED: set[str] = set()


def strategy_node(name: str, config_cls: type) -> dict[str, Any]:
    """The ``strategy`` config group entry of one strategy: its name, ``variant: null`` and
    every ``Config`` field at its dataclass default (lists and tuples as lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    defaults = config_cls()
    node: dict[str, Any] = {"name": name, "variant": None}
    for f in dataclasses.fields(config_cls):
        if f.init:
            node[f.name] = plain(getattr(defaults, f.name))
    return node


def register_strategy_configs() -> list[str]:
    """Put ``strategy/<name>`` (and ``strategy/_<name>_defaults``, for a YAML that states only
    what differs) in Hydra's ConfigStore for every registered strategy that loads; returns
    the names registered by this call. The built-ins are read statically
    (:func:`static_builtin_nodes`: no torch import); plugins (entry points,
    ``$CLC_STRATEGY_MODULES``, ``@register`` outside the package) are imported. Idempotent."""
    import os
    import sys
    from importlib import resources
    from importlib.metadata import entry_points

    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    yaml_dir = resources.files(CONFIG_MODULE).joinpath("strategy")
    nodes = static_builtin_nodes() if not _REGISTERED else {}
    registry = sys.modules.get("cl_compress.strategies.registry")
    plugins = bool(entry_points(group="cl_compress.strategies")) or \
        bool(os.environ.get("CLC_STRATEGY_MODULES", "").strip()) or nodes is None or \
        (registry is not None and bool(set(registry._REGISTRY) - set(nodes or {}) - _REGISTERED))
    if plugins:
        from cl_compress.strategies.registry import loadable

        for name, cls in loadable().items():
            if name not in (nodes or {}):
                (nodes := nodes or {})[name] = strategy_node(name, cls.Config)
    new = []
    for name, node in (nodes or {}).items():
        if name in _REGISTERED:
            continue
        if not yaml_dir.joinpath(f"{name}.yaml").is_file():  # a packaged YAML shadows it
            cs.store(group="strategy", name=name, node=node, provider="cl_compress")
        cs.store(group="strategy", name=f"_{name}_defaults", node=node, provider="cl_compress")
        _REGISTERED.add(name)
        new.append(name)
    return new


def compose_config(overrides: list[str] | None = None) -> dict[str, Any]:
    """The resolved config that ``python -m cl_compress.train <overrides>`` would use."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    register_strategy_configs()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    out = OmegaConf.to_container(cfg, resolve=False)
    out.pop("hydra", None)
    return OmegaConf.to_container(OmegaConf.create(out), resolve=True)  # type: ignore[return-value]


def check_strategy_choice(argv: list[str]) -> None:
    """A ``strategy=<name>`` on the command line that names no loadable strategy raises the
    registry's one-line ConfigError (the choices, or the plugin's import error) instead of
    Hydra's "Could not find 'strategy/<name>'"; a sweep ``strategy=a,b`` is checked name by
    name. Options of a generated config directory (``hydra.searchpath``) are left to Hydra."""
    from cl_compress.strategies.registry import get_strategy

    if any(a.startswith("hydra.searchpath") for a in argv):
        return
    for a in argv:
        key, sep, value = a.partition("=")
        if sep and key.lstrip("+~") == "strategy" and value:
            for name in value.split(","):
                if name.strip() not in _REGISTERED:
                    get_strategy(name.strip())
