"""Variant labels: derived from non-default categorical settings, or set by the sweep."""

from cl_compress.launch.sweep import strategy_config
from cl_compress.strategies import get_strategy
from cl_compress.strategies.base import variant_of


def test_variant_is_the_non_default_categorical_settings():
    cls = get_strategy("lrpet")
    assert variant_of(cls.Config()) == ""
    assert variant_of(cls.Config(mode="truncate", rank_ratio=0.3)) == "mode=truncate"  # numbers: same method
    assert variant_of(cls.Config(mode="truncate", energy_transfer=False)) == \
        "mode=truncate,energy_transfer=false"


def test_sweep_variant_configs_set_strategy_variant():
    text = strategy_config("lrpet", ["strategy.mode=truncate"], "lrpet-truncate", variant="lrpet-truncate")
    assert "variant: lrpet-truncate" in text and "mode: truncate" in text
    plain = strategy_config("packnet", ["strategy.prune_ratio=0.6"], "strategy_overrides.packnet")
    assert "variant" not in plain
