"""Defaults are stated once: each built-in strategy's YAML (cl_compress/configs/strategy/
<name>.yaml) must list exactly its dataclass's hyper-parameters, with the same defaults and a
one-line doc comment on each. The comparison is tested on planted disagreements too."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from typing import Any

import pytest
import yaml

from cl_compress.strategies import StrategyConfig, builtin_names, get_strategy, hp

LABEL_KEYS = {"name", "variant"}  # in every YAML, not hyper-parameters


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, list | tuple) else v


def disagreements(name: str, config_cls: type, text: str) -> list[str]:
    """Where the YAML ``text`` and the dataclass ``config_cls`` disagree (empty: none)."""
    data = yaml.safe_load(text) or {}
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    out = []
    if data.get("name") != name:
        out.append(f"name: {data.get('name')!r} in the YAML, {name!r} registered")
    for k in sorted(set(fields) - set(data)):
        out.append(f"{k}: in the dataclass, missing from the YAML")
    for k in sorted(set(data) - set(fields) - LABEL_KEYS):
        out.append(f"{k}: in the YAML, not a field of {config_cls.__name__}")
    for k in sorted(set(fields) & set(data)):
        f = fields[k]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if _plain(default) != _plain(data[k]) or type(default) is bool and type(data[k]) is not bool:
            out.append(f"{k}: default {default!r} in the dataclass, {data[k]!r} in the YAML")
    for k in sorted(set(fields) & set(data)):
        line = next((ln for ln in text.splitlines() if re.match(rf"{re.escape(k)}\s*:", ln)), "")
        if not re.search(r"\s#\s*\S", line):
            out.append(f"{k}: no one-line doc comment in the YAML")
    return out


def _yaml(name: str) -> str:
    return resources.files("cl_compress").joinpath("configs", "strategy", f"{name}.yaml").read_text()


@pytest.mark.parametrize("name", builtin_names())
def test_yaml_states_the_dataclass_defaults(name):
    assert not disagreements(name, get_strategy(name).Config, _yaml(name)), name


def test_every_builtin_has_a_yaml():
    shipped = {p.name.removesuffix(".yaml") for p in
               resources.files("cl_compress").joinpath("configs", "strategy").iterdir()
               if p.name.endswith(".yaml")}
    assert shipped == set(builtin_names()) and len(shipped) >= 6


@dataclasses.dataclass
class _Planted(StrategyConfig):
    ratio: float = hp(0.5, 0.0, 1.0)
    layers: list = hp(["a", "b"])
    flag: bool = hp(False)


def test_comparison_catches_planted_disagreements():
    good = ("name: x\nvariant: null  # label\nratio: 0.5  # doc\nlayers: [a, b]  # doc\n"
            "flag: false  # doc\n")
    assert disagreements("x", _Planted, good) == []
    bad = ("name: y\nratio: 0.6  # doc\nlayers: [a]  # doc\nflag: 0  # doc\nextra: 1  # doc\n")
    assert disagreements("x", _Planted, bad) == [
        "name: 'y' in the YAML, 'x' registered",
        "extra: in the YAML, not a field of _Planted",
        "flag: default False in the dataclass, 0 in the YAML",
        "layers: default ['a', 'b'] in the dataclass, ['a'] in the YAML",
        "ratio: default 0.5 in the dataclass, 0.6 in the YAML",
    ]
    assert disagreements("x", _Planted, good.replace("flag: false  # doc", "flag: false")) == [
        "flag: no one-line doc comment in the YAML"]
    assert disagreements("x", _Planted, "name: x\nratio: 0.5  # doc\n") == [
        "flag: in the dataclass, missing from the YAML", "layers: in the dataclass, missing from the YAML"]
