"""The README states the line count of each core file as a feature; keep those numbers honest."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| `([\w/.]+\.py)` \| (\d+) \|", re.M)


def test_readme_line_counts_match_the_files():
    rows = ROW.findall((ROOT / "README.md").read_text())
    assert len(rows) >= 10, "the README's layout table lists the core files with their line counts"
    wrong = [f"{path}: README says {n}, the file has {len((ROOT / path).read_text().splitlines())}"
             for path, n in rows if len((ROOT / path).read_text().splitlines()) != int(n)]
    assert not wrong, "update the README's layout table: " + "; ".join(wrong)


def test_readme_lists_every_module_of_the_package():
    listed = {path for path, _ in ROW.findall((ROOT / "README.md").read_text())}
    files = {str(p.relative_to(ROOT)) for p in (ROOT / "tinygrad_attn").rglob("*.py") if p.name != "__init__.py"}
    assert files <= listed, f"add to the README's layout table: {sorted(files - listed)}"


def test_readme_shows_the_two_commands_ci_relies_on():
    text = (ROOT / "README.md").read_text()
    assert "make train" in text and "make test" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
