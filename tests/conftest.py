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
REAL_HOME = os.path.expanduser("~")
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


def home_snapshot(home: str, depth: int = 2) -> dict[str, float]:
    """Names and modification times of the entries of ``home`` down to ``depth`` levels (a
    cheap fingerprint of what a test run could have written there)."""
    out: dict[str, float] = {}
    base = os.path.abspath(home)
    for root, dirs, files in os.walk(base):
        rel = os.path.relpath(root, base)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        if level >= depth:
            dirs[:] = []
        for name in dirs + files:
            p = os.path.join(root, name)
            try:
                out[os.path.relpath(p, base)] = os.lstat(p).st_mtime
            except OSError:
                pass
    return out


def snapshot_changes(before: dict[str, float], after: dict[str, float]) -> list[str]:
    return sorted([f"new {k}" for k in after.keys() - before.keys()]
                  + [f"removed {k}" for k in before.keys() - after.keys()]
                  + [f"modified {k}" for k in before.keys() & after.keys() if before[k] != after[k]])


# what the libraries a run uses write to a home folder (W&B, matplotlib, torch, Jupyter, our
# data cache, pip --user); other entries (a shell's history) are not the tests' doing
WATCHED = (".netrc", "wandb", ".wandb", ".config/wandb", ".cache/wandb", ".local/share/wandb",
           ".matplotlib", ".config/matplotlib", ".cache/matplotlib", ".cache/torch",
           ".cache/cl_compress", ".jupyter", ".ipython", ".local/share/jupyter", ".local/lib")


def watched(snapshot: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in snapshot.items()
            if any(k == w or k.startswith(w + os.sep) for w in WATCHED)}


_HOME_BEFORE = watched(home_snapshot(REAL_HOME, depth=3))


def pytest_sessionfinish(session, exitstatus):
    """The run wrote nothing in the user's real home (HOME and the caches point below a
    temporary folder for the whole session): with CLC_CHECK_HOME=1 (set by .ci/run, where
    nothing else runs) fail the session if it did. Off by default: on a shared machine another
    program's W&B or matplotlib files would be blamed on the tests."""
    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("CLC_CHECK_HOME") != "1":
        return
    changes = snapshot_changes(_HOME_BEFORE, watched(home_snapshot(REAL_HOME, depth=3)))
    if changes:
        print(f"\nerror: the test run wrote to {REAL_HOME}: " + "; ".join(changes[:10]))
        session.exitstatus = 1
