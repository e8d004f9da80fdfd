"""One label per method, the same in W&B, the report and the terminal, and run names and
groups that say the scenario and the budget.

``method_label`` is ``<strategy>`` or ``<strategy>[<variant>]``; the variant is the
strategy's categorical settings (modes, policies, switches) that differ from its defaults
(:func:`cl_compress.strategies.base.variant_of`), or an explicit ``strategy.variant``.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def method_label(name: str, settings: dict[str, Any] | Any, explicit: str | None = None) -> str:
    """``name[variant]``: ``explicit`` when given, else derived from ``settings`` (the
    strategy's config dataclass, or a dict of its values, e.g. results.json
    ``strategy_config``)."""
    if explicit not in (None, ""):
        return f"{name}[{explicit}]"
    from cl_compress.strategies.base import variant_of

    cfg = settings
    if isinstance(settings, dict):
        try:  # a name read from a run's files: the registry and entry points only, never a path
            from cl_compress.strategies.registry import resolve_registered

            cls = resolve_registered(name).Config
        except Exception:  # noqa: BLE001  (a strategy not registered here: no variant known)
            return name
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = dataclasses.replace(cls(), **{k: v for k, v in settings.items() if k in known})
    variant = variant_of(cfg)
    return f"{name}[{variant}]" if variant else name


def budget_tag(train: dict[str, Any]) -> str:
    """``1000steps`` (``train.steps_per_task``) or ``3ep`` (``train.epochs`` per phase)."""
    if train.get("steps_per_task"):
        return f"{int(train['steps_per_task'])}steps"
    return f"{train.get('epochs')}ep"


def group_name(benchmark: str, scenario: str, train: dict[str, Any]) -> str:
    """The default W&B group: runs that may be compared key by key (same benchmark,
    scenario and budget), e.g. ``split_fmnist-class-1000steps``."""
    return f"{benchmark}-{scenario}-{budget_tag(train)}"


def run_name(label: str, benchmark: str, scenario: str, train: dict[str, Any], seed: int) -> str:
    """``<label>-<benchmark>-<scenario>-<budget>-s<seed>``, e.g.
    ``lrpet[mode=truncate]-split_fmnist-task-1000steps-s0``."""
    return f"{label}-{benchmark}-{scenario}-{budget_tag(train)}-s{seed}"
