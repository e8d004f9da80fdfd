import logging
import os
import tempfile

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# No side effects outside the repository and the temporary directory: every per-user folder a
# library may write to (W&B's settings and cache, matplotlib's font cache, torch hub, XDG
# caches, HOME itself) points below one temporary folder for the whole session; subprocesses
# inherit it. tests/test_side_effects.py checks that it holds.
SANDBOX_HOME = tempfile.mkdtemp(prefix="clc-test-home-")
for _var, _sub in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_CONFIG_HOME", ".config"),
                   ("XDG_DATA_HOME", ".local/share"), ("WANDB_CONFIG_DIR", ".config/wandb"),
                   ("WANDB_CACHE_DIR", ".cache/wandb"), ("WANDB_DATA_DIR", ".local/share/wandb"),
                   ("MPLCONFIGDIR", ".config/matplotlib"), ("TORCH_HOME", ".cache/torch"),
                   ("IPYTHONDIR", ".ipython"), ("JUPYTER_CONFIG_DIR", ".jupyter"),
                   ("JUPYTER_DATA_DIR", ".local/share/jupyter")):
    os.environ[_var] = os.path.join(SANDBOX_HOME, _sub) if _sub else SANDBOX_HOME
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"
