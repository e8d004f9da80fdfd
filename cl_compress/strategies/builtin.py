"""Imports every strategy module of this package so that its ``@register`` runs.

Adding a built-in strategy is one module in ``cl_compress/strategies/``; nothing else needs
editing (its ``strategy/<name>`` config is generated from its ``Config`` dataclass:
``cl_compress.compose.register_strategy_configs``).
"""

import importlib
import pkgutil

_INFRA = {"base", "registry", "builtin"}

_PKG = importlib.import_module(__package__)
for _mod in pkgutil.iter_modules(_PKG.__path__):
    if not _mod.name.startswith("_") and _mod.name not in _INFRA:
        importlib.import_module(f"{__package__}.{_mod.name}")
