"""Every measured figure in docs/faithfulness.md points to a committed result file (issue 24):
each ``experiments/results/...`` path the page cites exists, and no row says "(when present)"."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cited(text: str) -> set[str]:
    return set(re.findall(r"experiments/results/[\w./-]+\.md", text))


def test_faithfulness_cites_only_committed_result_files():
    text = (ROOT / "docs" / "faithfulness.md").read_text()
    paths = cited(text)
    assert paths, "the page cites no result file"
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    assert not missing, f"docs/faithfulness.md cites result files that are not committed: {missing}"
    assert "when present" not in text


def test_the_check_finds_a_missing_file(tmp_path):
    """The checker itself, on a planted row."""
    row = "| x | y | z | option | 1 pt | `experiments/results/nope-2026-01-01.md` |"
    assert cited(row) == {"experiments/results/nope-2026-01-01.md"}
    assert not (ROOT / "experiments/results/nope-2026-01-01.md").is_file()
