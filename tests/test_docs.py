"""The course in docs/ is executed, so it cannot rot.

Convention, for every docs/NN-*.md chapter:
  * every ```python block runs, in order, in one namespace per chapter, in a fresh temporary
    directory, with the random generators as a fresh interpreter has them;
  * a ```text block right after a ```python block (only blank lines between) is that block's
    expected stdout, compared exactly after stripping trailing whitespace from each line;
  * a ```python block with no ```text block after it must print nothing, so a reader never
    sees output that the page does not show.
And for every .md file in docs/: each relative link or image points to an existing file,
and docs/README.md links every chapter.
"""

import contextlib
import io
import re
import traceback
from pathlib import Path

import pytest

import tinygrad_attn

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHAPTERS = sorted(DOCS.glob("[0-9][0-9]-*.md"))
PAGES = sorted(DOCS.glob("*.md"))

FENCE = re.compile(r"^```(\w*)\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def parse_blocks(text):
    """[(language, first body line (1-based), body, opening fence index, closing fence index)]."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        opening, i = i, i + 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        if i == len(lines):
            raise ValueError(f"unclosed ``` fence opened at line {opening + 1}")
        blocks.append((m.group(1), opening + 2, "\n".join(lines[opening + 1:i]), opening, i))
        i += 1
    return blocks


def runnable(text):
    """[(line, code, expected stdout or None)]: each python block with the text block after it."""
    blocks, lines, out = parse_blocks(text), text.splitlines(), []
    for k, (lang, line, body, _, close) in enumerate(blocks):
        if lang != "python":
            continue
        expected = None
        if k + 1 < len(blocks):
            nlang, _, nbody, nopen, _ = blocks[k + 1]
            if nlang == "text" and all(not s.strip() for s in lines[close + 1:nopen]):
                expected = nbody
        out.append((line, body, expected))
    return out


def normalise(s):
    return "\n".join(line.rstrip() for line in s.strip("\n").splitlines()).strip("\n")


def fresh_random_state():
    """tinygrad_attn's generator as a new interpreter has it, so a reader who pastes a chapter sees these numbers."""
    tinygrad_attn.manual_seed(0)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_and_prints_what_it_shows(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    fresh_random_state()
    blocks = runnable(path.read_text())
    assert blocks, f"{path.name} has no ```python block"
    namespace = {"__name__": "__main__"}
    rel = path.relative_to(DOCS.parent)
    for line, code, expected in blocks:
        # Pad with newlines so tracebacks give the line number in the .md file.
        compiled = compile("\n" * (line - 1) + code, str(rel), "exec")
        stdout = io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout):
                exec(compiled, namespace)
        except Exception:
            pytest.fail(f"{rel}: the python block at line {line} raised\n{traceback.format_exc()}", pytrace=False)
        got = normalise(stdout.getvalue())
        if expected is None:
            assert got == "", f"{rel}: the python block at line {line} prints, but no ```text block shows it:\n{got}"
        else:
            want = normalise(expected)
            assert got == want, (f"{rel}: the python block at line {line} printed something other than what the page shows."
                                 f"\n--- page ---\n{want}\n--- printed ---\n{got}")


def relative_links(text):
    """Link targets outside code blocks that are not URLs or in-page anchors."""
    kept, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line) or (inside and line.rstrip() == "```"):
            inside = not inside
            continue
        if not inside:
            kept.append(re.sub(r"`[^`]*`", "", line))  # inline code is not a link
    targets = LINK.findall("\n".join(kept))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_point_to_files(path):
    missing = [t for t in relative_links(path.read_text())
               if not (path.parent / t.split("#")[0]).exists()]
    assert not missing, f"docs/{path.name} links to files that do not exist: {missing}"


def test_index_links_every_chapter():
    index = DOCS / "README.md"
    assert index.exists(), "docs/README.md (the index of the course) is missing"
    linked = {Path(t.split("#")[0]).name for t in relative_links(index.read_text())}
    missing = [p.name for p in CHAPTERS if p.name not in linked]
    assert CHAPTERS and not missing, f"docs/README.md does not link the chapters {missing}"


def test_the_harness_pairs_code_with_output():
    page = "Text.\n\n```python\nprint(1)\n```\n\n```text\n1\n```\n\n```python\nx = 2\n```\nprose\n```text\nnot output\n```\n"
    assert runnable(page) == [(4, "print(1)", "1"), (12, "x = 2", None)]
    assert relative_links("[a](x.md) `[b](y.md)` ![c](g/z.svg)\n```python\n[d](w.md)\n```\n[e](https://e.org)") \
        == ["x.md", "g/z.svg"]
