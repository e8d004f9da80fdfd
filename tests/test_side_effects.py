"""`make test` has no side effects outside the repository and the temporary directory: it
never installs into the system Python (no pip outside .venv, no apt-get), tests never point
make at another interpreter or stamp, and the real HOME is left untouched (conftest checks it
at the end of the session under .ci/run, CLC_CHECK_HOME=1; the check itself is tested here on
a planted change)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REAL_HOME, SANDBOX_HOME, home_snapshot, snapshot_changes, watched

REPO = Path(__file__).resolve().parents[1]


def _dry_run(*targets: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    out = subprocess.run(["make", "-n", "-B", *targets], cwd=REPO, capture_output=True, text=True,
                         env=env, check=True)
    return out.stdout.replace("\\\n", " ")


@pytest.mark.parametrize("target", ["test", "lint", "test-slow"])
def test_make_installs_only_into_the_repository_venv(target):
    """Every install line of what `make <target>` would run uses .venv's own interpreter; the
    system package manager is never called (`make data` is separate and explicit)."""
    out = _dry_run(target)
    installs = [ln for ln in out.splitlines() if "pip install" in ln]
    assert installs, "the dry run should show the venv recipe (-B): the check would be vacuous"
    for ln in installs:
        for cmd in re.findall(r"(\S+) -m pip install", ln):
            assert cmd == ".venv/bin/python", f"`make {target}` installs with {cmd}: {ln.strip()}"
    assert "apt-get" not in out and "sudo" not in out, f"`make {target}` calls the package manager"


def test_no_test_points_make_at_another_python_or_stamp():
    """`make -n tune ... STAMP=Makefile` once made GNU make remake the Makefile with the
    system Python's pip: no test passes PY= or STAMP= to make."""
    offenders = []
    for path in sorted((REPO / "tests").glob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""["'](PY|STAMP|VENV)=""", line):
                offenders.append(f"{path.name}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_session_runs_with_a_temporary_home():
    assert os.environ["HOME"] == SANDBOX_HOME != REAL_HOME
    for var in ("XDG_CACHE_HOME", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "MPLCONFIGDIR", "TORCH_HOME"):
        assert os.environ[var].startswith(SANDBOX_HOME + os.sep), var
    assert Path("~").expanduser() == Path(SANDBOX_HOME)


def test_home_check_sees_a_planted_write(tmp_path):
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    (home / ".netrc").write_text("x")
    before = home_snapshot(str(home))
    (home / ".cache" / "wandb").mkdir()
    os.utime(home / ".netrc", (1, 1))
    (home / ".config").mkdir()
    (home / ".bash_history").write_text("ls")  # not the tests' doing: not watched
    assert snapshot_changes(watched(before), watched(home_snapshot(str(home)))) == [
        "modified .netrc", "new .cache/wandb"]
