"""experiments/harness.py: the scaffolding the bench scripts share."""

from pathlib import Path

from experiments import harness


def test_write_results_is_atomic_and_defaults_under_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "results")
    p = harness.write_results("# t\n\nrow\n\n", None, "x-2026.md")
    assert p == tmp_path / "results" / "x-2026.md" and p.read_text() == "# t\n\nrow\n"
    assert f"written to {p}" in capsys.readouterr().out
    out = tmp_path / "else" / "y.md"
    assert harness.write_results("a", str(out), "unused.md") == out and out.read_text() == "a\n"
    assert sorted(q.name for q in (tmp_path / "results").iterdir()) == ["x-2026.md"]  # no tmp left


def test_command_and_parser():
    assert harness.command("experiments.defaults", ["--strategies", "naive lrpet", "train.lr=0.1"]) == \
        "python -m experiments.defaults --strategies 'naive lrpet' train.lr=0.1"
    ap = harness.parser("experiments.bench", "Title line.\nmore", "bench-<date>.md")
    assert ap.prog == "python -m experiments.bench" and ap.description == "Title line."
    assert ap.parse_args(["--out", "o.md"]).out == "o.md" and ap.parse_args([]).out is None


def test_scripts_use_the_harness():
    """The ported scripts write through harness.write_results (atomic), not write_text."""
    root = Path(harness.__file__).parent
    for name in ("bench", "bench_packnet", "bench_cacl", "defaults", "class_il", "bench_gpu",
                 "bench_ada_qpacknet", "bench_lrpet", "capacity", "ada_options"):
        text = (root / f"{name}.py").read_text()
        assert "harness.write_results(" in text and ".write_text(" not in text, name


def test_setup_line_is_read_from_the_run_config():
    res = {"config": {"model": {"name": "mlp", "hidden": [64, 32]},
                      "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 64}}}
    assert harness.setup_of(res) == "mlp [64, 32], sgd lr 0.1, batch 64"


def test_recipes_small_settings_reduce_the_budget_and_keep_each_regime():
    """experiments.recipes_small: the recipe regime keeps the preset's optimiser and strategy
    rules, the protocol regime the protocol's; both get the one reduced budget."""
    from argparse import Namespace

    from experiments.recipes_small import settings
    args = Namespace(steps=300, train_per_task=3000)
    rec, rsov = settings("lrpet", "recipe", "split_fmnist", args)
    pro, psov = settings("lrpet", "protocol", "split_fmnist", args)
    for ov in (rec, pro):
        assert [o for o in ov if o.startswith("train.steps_per_task=")] == ["train.steps_per_task=300"]
        assert [o for o in ov if o.startswith("benchmark.max_train_per_task=")] == \
            ["benchmark.max_train_per_task=3000"]
    assert "train.optimizer=sgd" in rec and "train.lr=0.1" in rec and "train.optimizer=sgd" not in pro
    assert rsov["lrpet"] == ["strategy.rank_ratio=0.2"] and "lrpet" not in psov
    assert "strategy.probe_bits=[4,8]" in psov["ada_qpacknet"]


def test_verdicts_table_reads_each_regime_and_never_fills_a_missing_one(tmp_path):
    """experiments.verdicts: the protocol and recipe verdicts come from each folder's
    summary.json, side by side; a recipe folder that is missing is 'not run'."""
    import json

    from experiments import verdicts

    def summary(preset, verdict):
        claim = {"paper": "PackNet (Mallya & Lazebnik 2018)", "claim": "c", "verdict": verdict,
                 "evidence": f"e-{preset}"}
        budget = {"train_steps_per_task": {"packnet": [1500.0] * 5, "naive": [1500.0] * 4 + [900.0]}}
        return {"meta": {"preset": preset},
                "benchmarks": {"split_fmnist-task": {"claims": [claim], "budget": budget}}}

    for folder, preset, verdict in (("compare-protocol-round3", "protocol", "supported"),
                                    ("recipe-packnet", "recipe_packnet", "not supported")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "summary.json").write_text(json.dumps(summary(preset, verdict)))
    rows = [r for r in verdicts.table(tmp_path) if r.startswith("| PackNet")]
    assert len(rows) == 2
    assert "common protocol (`protocol`)" in rows[0] and "**supported**" in rows[0]
    assert "adam lr 0.001" in rows[0] and "`packnet` 1500, `naive` 900-1500" in rows[0]
    assert "authors' recipe (`recipe_packnet`)" in rows[1] and "**not supported**" in rows[1]
    assert "sgd lr 0.001 momentum 0.9" in rows[1] and "(preset)" in rows[1]
    assert "e-recipe_packnet" in rows[1]
    # the overrides the sweep ran with (sweep.json) win over the preset as it is now
    (tmp_path / "recipe-packnet" / "sweep.json").write_text(json.dumps(
        {"jobs": [{"args": ["-m", "train.optimizer=sgd", "train.lr=0.05", "seed=0"]}]}))
    row = [r for r in verdicts.table(tmp_path) if r.startswith("| PackNet")][1]
    assert "sgd lr 0.05 momentum" in row and "(sweep.json)" in row
    lrpet = [r for r in verdicts.table(tmp_path) if r.startswith("| LRPET")]
    assert "**not run**" in lrpet[1] and "recipe-lrpet/summary.json" in lrpet[1]
