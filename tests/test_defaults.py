"""Defaults are stated once: every strategy's ``strategy/<name>`` config is generated from its
``Config`` dataclass (Hydra ConfigStore, ``compose.register_strategy_configs``). A
YAML in ``cl_compress/configs/strategy/`` may exist only to change something: every
hyper-parameter it sets differs from the dataclass default, and it builds on the generated
``_<name>_defaults``. The docs of the hyper-parameters live in ``hp(doc=...)``. The checker
is tested on planted YAMLs too."""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

import pytest
import yaml

from cl_compress.compose import compose_config, strategy_node
from cl_compress.strategies import StrategyConfig, TrainSettings, builtin_names, get_strategy, hp

LABEL_KEYS = {"name", "variant", "defaults"}


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, list | tuple) else v


def restated(name: str, config_cls: type, text: str) -> list[str]:
    """What a strategy YAML ``text`` states that the dataclass already states (empty: it holds
    only differences), and structural faults (unknown keys, not built on the defaults)."""
    data = yaml.safe_load(text) or {}
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    out = []
    if f"_{name}_defaults" not in (data.get("defaults") or []):
        out.append(f"defaults: does not start from _{name}_defaults")
    for k in sorted(set(data) - set(fields) - LABEL_KEYS):
        out.append(f"{k}: in the YAML, not a field of {config_cls.__name__}")
    for k in sorted(set(fields) & set(data)):
        f = fields[k]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if _plain(default) == _plain(data[k]) and type(default) is type(data[k]):
            out.append(f"{k}: restates the dataclass default {default!r}")
    return out


def _shipped() -> dict[str, str]:
    root = resources.files("cl_compress").joinpath("configs", "strategy")
    if not root.is_dir():
        return {}
    return {p.name.removesuffix(".yaml"): p.read_text() for p in root.iterdir() if p.name.endswith(".yaml")}


@pytest.mark.parametrize("name", builtin_names())
def test_composed_strategy_config_is_the_dataclass(name):
    """``strategy=<name>`` composes to the dataclass defaults (plus the differences of a
    shipped YAML, if there is one): no second copy of a default anywhere."""
    cls = get_strategy(name)
    got = compose_config([f"strategy={name}"])["strategy"]
    want = strategy_node(name, cls.Config)
    if name in _shipped():
        assert not restated(name, cls.Config, _shipped()[name])
        want |= {k: v for k, v in yaml.safe_load(_shipped()[name]).items() if k != "defaults"}
    assert got == want
    built = cls.from_config({k: v for k, v in got.items() if k not in ("name", "variant")},
                            TrainSettings())
    assert dataclasses.asdict(built.cfg) == dataclasses.asdict(cls.Config())
    assert got["name"] == name and got["variant"] is None


def test_static_reading_of_the_builtins_agrees_with_their_dataclasses():
    """The command line registers the built-ins' configs from their source (no torch import
    before a config error); that reading must equal the imported dataclasses."""
    from cl_compress.compose import static_builtin_nodes

    static = static_builtin_nodes()
    assert static is not None and sorted(static) == builtin_names()
    for name in builtin_names():
        assert static[name] == strategy_node(name, get_strategy(name).Config), name


def test_every_hyper_parameter_has_its_doc_and_range_in_the_dataclass():
    for name in builtin_names():
        for f in dataclasses.fields(get_strategy(name).Config):
            assert f.metadata and f.metadata.get("doc"), f"{name}.{f.name}: hp(..., doc=...) missing"


def test_shipped_yamls_hold_only_differences():
    for name, text in _shipped().items():
        assert name in builtin_names(), name
        assert not restated(name, get_strategy(name).Config, text), name


def test_a_yaml_of_differences_composes_over_the_generated_defaults(tmp_path):
    (tmp_path / "strategy").mkdir()
    (tmp_path / "strategy" / "packnet_wide.yaml").write_text(
        "defaults:\n  - _packnet_defaults\n  - _self_\nprune_ratio: 0.75\n")
    got = compose_config(["strategy=packnet_wide", f"hydra.searchpath=['file://{tmp_path}']"])["strategy"]
    assert got == strategy_node("packnet", get_strategy("packnet").Config) | {"prune_ratio": 0.75}


@dataclasses.dataclass
class _Planted(StrategyConfig):
    ratio: float = hp(0.5, 0.0, 1.0)
    layers: list = hp(["a", "b"])
    flag: bool = hp(False)


def test_checker_catches_planted_restatements():
    good = "defaults: [_x_defaults, _self_]\nratio: 0.6\nlayers: [a]\n"
    assert restated("x", _Planted, good) == []
    bad = "ratio: 0.5\nlayers: [a, b]\nflag: 0\nextra: 1\n"
    assert restated("x", _Planted, bad) == [
        "defaults: does not start from _x_defaults",
        "extra: in the YAML, not a field of _Planted",
        "layers: restates the dataclass default ['a', 'b']",
        "ratio: restates the dataclass default 0.5",
    ]  # flag: 0 is not the default False (a different type), so it is a change
