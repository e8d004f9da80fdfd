"""Strategies from outside the package: by import path and by entry point."""

import sys
import textwrap

import pytest
import torch

from cl_compress.errors import ConfigError
from cl_compress.strategies import get_strategy
from cl_compress.testing import old_task_outputs, run_quick

PLUGIN = "tests.plugins.ext_strategy:HeadsOnly"


def test_import_path_strategy_runs_and_validates(run_dir):
    res = run_quick(run_dir, [f"strategy.name={PLUGIN}", "+strategy.lr_scale=2.0"])
    assert res["strategy"] == PLUGIN and res["n_tasks"] == 3
    assert res["forgetting"] == 0.0
    msg = r"strategy.lr_scale=-1.0 is out of range; valid range is \(0.0, 10.0\]"
    with pytest.raises(ConfigError, match=msg):
        run_quick(run_dir, [f"strategy.name={PLUGIN}", "+strategy.lr_scale=-1.0"])
    with pytest.raises(ConfigError, match="task-incremental"):
        run_quick(run_dir, [f"strategy.name={PLUGIN}", "benchmark.scenario=class"])


def test_external_strategy_is_bit_exact_on_old_tasks(tmp_path):
    outs = old_task_outputs([f"strategy.name={PLUGIN}"], tmp_path)
    assert len(outs) == 3 and all(torch.equal(outs[0], o) for o in outs[1:])


def test_entry_point_strategy(tmp_path, monkeypatch):
    dist = tmp_path / "my_cl_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cl-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""
        [cl_compress.strategies]
        heads_only = {PLUGIN}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = get_strategy("heads_only")
    assert cls.__name__ == "HeadsOnly"
    from cl_compress.strategies import available

    assert "heads_only" in available()
    assert "tests.plugins" in sys.modules


def test_unknown_names_list_choices():
    with pytest.raises(ConfigError, match="naive"):
        get_strategy("nope")
    with pytest.raises(ConfigError, match="cannot import"):
        get_strategy("no_such_module:Cls")


def test_lookup_does_not_change_the_class(tmp_path, monkeypatch):
    """A lookup is side-effect free, so the entry-point and import-path tests pass in any order."""
    from cl_compress.settings import TrainSettings
    from tests.plugins.ext_strategy import HeadsOnly

    dist = tmp_path / "my_cl_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cl-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[cl_compress.strategies]\nheads_only = {PLUGIN}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(vars(HeadsOnly))
    for name in ("heads_only", PLUGIN):
        assert get_strategy(name) is HeadsOnly
        assert get_strategy(name).from_config({}, TrainSettings(), name=name).name == name
    assert dict(vars(HeadsOnly)) == before and HeadsOnly.name == ""
