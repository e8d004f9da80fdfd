"""Every hyper-parameter of every registered strategy is range-checked before training."""

import dataclasses

import pytest

from cl_compress.errors import ConfigError
from cl_compress.strategies import TrainSettings, builtin_names, get_strategy


def _fields(name):
    return [f for f in dataclasses.fields(get_strategy(name).Config) if f.init]


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _bad_values(meta: dict):
    if meta.get("choices") is not None:
        yield "__not_a_choice__"
        return
    lo, hi = meta.get("low"), meta.get("high")
    if lo is not None:
        yield lo if meta.get("low_open") else lo - 1
    if hi is not None:
        yield hi if meta.get("high_open") else hi + 1


CASES = [(n, f.name) for n in builtin_names() for f in _fields(n)]


@pytest.mark.parametrize("name", builtin_names())
def test_every_numeric_parameter_declares_a_range(name):
    unchecked = []
    for f in _fields(name):
        value = _default(f)
        item = value[0] if isinstance(value, list) and value else value
        numeric = isinstance(item, int | float) and not isinstance(item, bool)
        meta = dict(f.metadata)
        if numeric and meta.get("low") is None and meta.get("high") is None and meta.get("choices") is None:
            unchecked.append(f.name)
    assert not unchecked, f"{name}: declare a range with hp(...) for {unchecked}"


@pytest.mark.parametrize("name,field", CASES or [pytest.param(None, None, marks=pytest.mark.skip)])
def test_out_of_range_value_is_rejected_with_its_name(name, field):
    f = next(x for x in _fields(name) if x.name == field)
    meta = dict(f.metadata)
    default = _default(f)
    bad_values = list(_bad_values(meta))
    if not bad_values:
        pytest.skip(f"{name}.{field} has no range (non-numeric)")
    for bad in bad_values:
        value = [bad] * max(1, len(default)) if isinstance(default, list) else bad
        with pytest.raises(ConfigError, match=rf"strategy\.{field}"):
            get_strategy(name).from_config({field: value}, TrainSettings())


@pytest.mark.parametrize("name", builtin_names())
def test_defaults_are_valid_and_unknown_keys_rejected(name):
    cls = get_strategy(name)
    cls.from_config({}, TrainSettings())
    with pytest.raises(ConfigError, match="unknown parameter"):
        cls.from_config({"no_such_parameter": 1}, TrainSettings())
