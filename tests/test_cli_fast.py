"""`make list` and config errors answer before any heavy import; a config error leaves no
run folder (timings: see README "Command line"; measured, never asserted)."""

import subprocess
import sys
from pathlib import Path

from cl_compress.benchmarks import BENCHMARKS
from cl_compress.cli import list_choices
from cl_compress.models import BACKBONES
from cl_compress.strategies import available

ROOT = Path(__file__).resolve().parents[1]


def test_static_list_matches_the_registry():
    text = list_choices()
    for name, desc in available().items():
        assert f"  {name:<14} {desc}" in text
    for name, (desc, _, _) in BENCHMARKS.items():
        assert f"  {name:<16} {desc}" in text
    for name, (_, desc) in BACKBONES.items():
        assert f"  {name:<10} {desc}" in text


def test_list_and_precheck_import_no_torch():
    code = ("import sys; from cl_compress.cli import list_choices; list_choices(); "
            "from hydra import compose, initialize_config_module; from omegaconf import OmegaConf; "
            "from cl_compress.train import precheck\n"
            "from cl_compress.compose import register_strategy_configs\n"
            "register_strategy_configs()  # what python -m cl_compress.train does first\n"
            "with initialize_config_module(config_module='cl_compress.configs', version_base=None):\n"
            "    cfg = compose(config_name='train', overrides=['logger=none'])\n"
            "precheck(OmegaConf.to_container(cfg, resolve=True))\n"
            "print(sorted(m for m in ('torch', 'lightning', 'avalanche') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_config_error_leaves_no_run_folder(tmp_path):
    run = tmp_path / "runs" / "x" / "s0"
    for bad in ("train.lr=-1", "strategy.prune_ratio=7"):  # before torch; at the strategy's import
        p = subprocess.run([sys.executable, "-m", "cl_compress.train", bad, "logger=none",
                            "benchmark=synthetic", "strategy=packnet", f"hydra.run.dir={run}"],
                           capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 2 and p.stderr.strip().startswith("error: "), p.stderr
        assert "Traceback" not in p.stderr and not run.exists()


def test_static_backbone_signatures_match_the_functions():
    import inspect

    from cl_compress.settings.validate import backbone_signatures

    static = backbone_signatures()
    assert set(static) == set(BACKBONES)
    for name, (fn, _) in BACKBONES.items():
        params = list(inspect.signature(fn).parameters.values())[1:]
        assert static[name] == {p.name: p.default for p in params}
