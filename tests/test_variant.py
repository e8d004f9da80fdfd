"""Variant labels: derived from non-default categorical settings (one function for W&B, the
report and the terminal), or set explicitly."""

from cl_compress.launch.sweep import strategy_config
from cl_compress.report.labels import group_name, method_label, run_name
from cl_compress.report.load import assign_labels
from cl_compress.report.runs import Run
from cl_compress.strategies import get_strategy
from cl_compress.strategies.base import variant_of


def test_variant_is_the_non_default_categorical_settings():
    cls = get_strategy("lrpet")
    assert variant_of(cls.Config()) == ""
    assert variant_of(cls.Config(mode="truncate", rank_ratio=0.3)) == "mode=truncate"  # numbers: same method
    assert variant_of(cls.Config(mode="truncate", energy_transfer=False)) == \
        "mode=truncate,energy_transfer=false"


def test_list_defaults_are_defaults():
    """CACL's factorize is a list (default_factory): its default is no variant."""
    cacl = get_strategy("cacl").Config
    assert variant_of(cacl()) == ""
    assert method_label("cacl", cacl()) == "cacl"
    assert method_label("cacl", {"factorize": ["linear"]}).startswith("cacl[factorize=")


def test_sweep_variant_of_categorical_settings_keeps_the_derived_label():
    text = strategy_config("lrpet", ["strategy.mode=truncate"], "lrpet-truncate", variant="lrpet-truncate")
    assert "variant" not in text and "mode: truncate" in text  # labelled lrpet[mode=truncate]
    numeric = strategy_config("lrpet", ["strategy.finetune_epochs=3"], "lrpet-ft3", variant="lrpet-ft3")
    assert "variant: lrpet-ft3" in numeric  # no categorical difference: the preset's name
    plain = strategy_config("packnet", ["strategy.prune_ratio=0.6"], "strategy_overrides.packnet")
    assert "variant" not in plain


def test_report_labels_match_the_run_labels(tmp_path):
    def run(strategy, cfg, variant=None):
        res = {"strategy": strategy, "benchmark": "b", "scenario": "task", "acc_matrix": [[1.0]],
               "strategy_config": cfg, "config": {"strategy": {"variant": variant}}}
        return Run(tmp_path, res)

    cacl = run("cacl", {"factorize": ["linear", "conv"]})
    trunc = run("lrpet", {"mode": "truncate"})
    named = run("lrpet", {"mode": "lrpet", "finetune_epochs": 3}, variant="ft3")
    p1, p2 = run("packnet", {"prune_ratio": 0.5}), run("packnet", {"prune_ratio": 0.75})
    assign_labels([cacl, trunc, named, p1, p2])
    assert cacl.label == method_label("cacl", get_strategy("cacl").Config()) == "cacl"
    assert trunc.label == "lrpet[mode=truncate]" and named.label == "lrpet[ft3]"
    assert p1.label != p2.label and "prune_ratio=0.75" in p2.label


def test_names_and_groups_say_scenario_and_budget():
    steps, epochs = {"steps_per_task": 1000, "epochs": None}, {"steps_per_task": None, "epochs": 3}
    assert group_name("split_fmnist", "class", steps) == "split_fmnist-class-1000steps"
    assert group_name("split_fmnist", "task", epochs) == "split_fmnist-task-3ep"
    assert run_name("lrpet[mode=truncate]", "split_fmnist", "task", steps, 0) == \
        "lrpet[mode=truncate]-split_fmnist-task-1000steps-s0"
