"""Command-line typos answered in one line before Hydra, torch or Lightning are imported.

``python -m cl_compress.train strategy=lrpt`` would otherwise print Hydra's ~17-line
"Could not find 'strategy/lrpt'" and ``strategy.rnak=4`` Hydra's advice to append the key
with ``+``. :func:`check_argv` reads only the YAML files under ``cl_compress/configs`` and the
built-in strategies' sources (statically, :func:`cl_compress.settings.catalogue.static_builtin_nodes`).
"""

from __future__ import annotations

import difflib
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
GROUPS = ("strategy", "benchmark", "model", "trainer", "logger")
NAMED = {"strategy": "strategy", "benchmark": "benchmark", "model": "model",
         "trainer": "trainer preset", "logger": "logger"}
TOP_SECTIONS = ("train", "eval")  # keys of train.yaml itself


def choices(group: str) -> list[str] | None:
    """The valid names of a config group; None when they cannot be known without importing
    code (``$CLC_STRATEGY_MODULES`` registers strategies at import). The strategy group is
    generated from the dataclasses (:mod:`cl_compress.compose`): the built-ins read from their
    source, installed plugins by their entry-point names."""
    names = {p.stem for p in (CONFIGS / group).glob("*.yaml")}
    if group == "strategy":
        import os
        from importlib.metadata import entry_points

        if os.environ.get("CLC_STRATEGY_MODULES"):
            return None
        nodes = _strategy_nodes()
        if nodes is None:
            return None
        names |= set(nodes) | {ep.name for ep in entry_points(group="cl_compress.strategies")}
    return sorted(names)


def _strategy_nodes() -> dict | None:
    from cl_compress.settings.catalogue import static_builtin_nodes

    return static_builtin_nodes()


def _group_keys(group: str, name: str) -> set[str] | None:
    """The settings of ``group``'s choice ``name``; None when unknown without importing code
    (a plugin strategy: its generated config answers through Hydra and the registry)."""
    if group == "strategy":
        node = (_strategy_nodes() or {}).get(name)
        return set(node) if node is not None else None
    file = CONFIGS / group / f"{name}.yaml"
    return _yaml_keys(file) if file.is_file() else None


def _yaml_keys(path: Path) -> set[str]:
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return {str(k) for k in data if k != "defaults"} if isinstance(data, dict) else set()


def _defaults() -> dict[str, str]:
    import yaml

    out: dict[str, str] = {}
    for item in (yaml.safe_load((CONFIGS / "train.yaml").read_text()) or {}).get("defaults", []):
        if isinstance(item, dict):
            out |= {str(k): str(v) for k, v in item.items()}
    return out


def _hint(word: str, options: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.5)
    return f"did you mean {close[0]}? " if close else ""


def check_argv(argv: list[str]) -> str | None:
    """The one-line error for the first unknown group choice (``strategy=lrpt``) or unknown
    key of a chosen group (``strategy.rnak=4``, ``train.lrr=0.1``); None when all are known.
    ``+key``/``++key``/``~key`` (Hydra's explicit additions/removals), ``hydra.*`` and
    options (``-m``, ``--cfg``) are left to Hydra."""
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "+", "~", "hydra."))]
    chosen = _defaults()
    for a in overrides:
        key, value = a.split("=", 1)
        if key in GROUPS:
            valid = choices(key)
            for v in value.split(","):  # a multirun sweep: strategy=naive,packnet
                if valid is not None and v not in valid:
                    return (f"unknown {NAMED[key]} {v!r}; {_hint(v, valid)}"
                            f"choose one of: {', '.join(valid)}")
            chosen[key] = value.split(",")[0]
    top = _yaml_keys(CONFIGS / "train.yaml")
    import yaml

    sections = {s: set((yaml.safe_load((CONFIGS / "train.yaml").read_text()) or {}).get(s) or {})
                for s in TOP_SECTIONS}
    for a in overrides:
        key = a.split("=", 1)[0]
        head, _, rest = key.partition(".")
        if not rest:
            if head not in top and head not in GROUPS:
                return (f"unknown setting {head!r}; {_hint(head, top | set(GROUPS))}"
                        f"top-level settings: {', '.join(sorted(top))}")
            continue
        sub = rest.split(".")[0]
        if head in GROUPS:
            known = _group_keys(head, chosen.get(head, ""))
            if known is None:
                continue
            what = f"{NAMED[head]} {chosen[head]!r}"
        elif head in sections:
            known, what = sections[head], f"section {head!r}"
        else:
            continue
        if sub not in known:
            return (f"{what} has no setting {sub!r} ({key}); {_hint(sub, known)}"
                    f"its settings: {', '.join(sorted(known))}")
    return None


def exit_on_typo(argv: list[str]) -> None:
    """Print :func:`check_argv`'s line and exit 2, or return when every choice is known."""
    import sys

    if (typo := check_argv(argv)) is not None:
        print(f"error: {typo}", file=sys.stderr)
        sys.exit(2)
