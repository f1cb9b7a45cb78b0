"""The course in docs/ is executed, so it cannot rot.

Convention, for every docs/NN-*.md chapter:
  * every ```python block runs, in order, in one namespace per chapter, in a fresh temporary
    directory, with the random generators as a fresh interpreter has them; the blocks inside
    an exercise's <details> solution are blocks like the others, run in their place;
  * a ```text block right after a ```python block (only blank lines between) is that block's
    expected stdout, compared exactly after stripping trailing whitespace from each line;
  * a ```python block with no ```text block after it must print nothing, so a reader never
    sees output that the page does not show;
  * a ```pycon block is a PyTorch session (the "Where PyTorch differs" boxes): with torch
    installed it runs as a doctest, one namespace per chapter, and must print what it shows;
  * the chapter ends with at least three exercises, each with a <details> solution holding
    python blocks;
  * docs/notebooks/NN-*.ipynb is exactly what docs/make_notebooks.py makes of the chapter and
    of what its blocks print (run `make notebooks` after changing a chapter).
And for every .md file in docs/: each relative link or image points to an existing file,
and docs/README.md links every chapter.
"""

import doctest
import functools
import importlib.util
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_spec = importlib.util.spec_from_file_location("make_notebooks", DOCS / "make_notebooks.py")
make_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_notebooks)

CHAPTERS = make_notebooks.chapters()
PAGES = sorted(DOCS.glob("*.md"))
FENCE = make_notebooks.FENCE
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
runnable, normalise = make_notebooks.runnable, make_notebooks.normalise


@functools.lru_cache(maxsize=None)
def executed(path):
    """(what each python block printed, the namespace) of a chapter, run once for all the tests here."""
    return make_notebooks.execute(path)


def run_or_fail(path):
    try:
        return executed(path)
    except make_notebooks.BlockError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_and_prints_what_it_shows(path):
    blocks = runnable(path.read_text())
    assert blocks, f"{path.name} has no ```python block"
    rel = path.relative_to(DOCS.parent)
    printed, _ = run_or_fail(path)
    for (line, _, expected, _), out in zip(blocks, printed):
        got = normalise(out)
        if expected is None:
            assert got == "", f"{rel}: the python block at line {line} prints, but no ```text block shows it:\n{got}"
        else:
            want = normalise(expected)
            assert got == want, (f"{rel}: the python block at line {line} printed something other than what the page shows."
                                 f"\n--- page ---\n{want}\n--- printed ---\n{got}")


# ---------------------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------------------

def solutions(text):
    """[(line of <details>, summary, number of python blocks inside)] for each <details> block."""
    found, inside_fence, current = [], False, None
    for i, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m or (inside_fence and line.rstrip() == "```"):
            if m and not inside_fence and current is not None and m.group(1) == "python":
                current[2] += 1
            inside_fence = not inside_fence
            continue
        if inside_fence:
            continue
        s = line.strip()
        if s == "<details>":
            assert current is None, f"line {i}: <details> inside <details>"
            current = [i, None, 0]
        elif s.startswith("<summary>") and current is not None:
            current[1] = re.sub(r"</?summary>", "", s)
        elif s == "</details>":
            assert current is not None, f"line {i}: </details> without <details>"
            found.append(tuple(current))
            current = None
    assert current is None, f"<details> opened at line {current[0]} is never closed"
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_three_exercises_with_executed_solutions(path):
    text = path.read_text()
    assert re.search(r"^## Exercises$", text, re.M), f"{path.name} has no '## Exercises' section"
    found = solutions(text)
    bad = [(line, summary) for line, summary, n in found if summary != "Solution" or n == 0]
    assert not bad, f"{path.name}: <details> blocks without <summary>Solution</summary> or a python block: {bad}"
    assert len(found) >= 3, f"{path.name} has {len(found)} exercises with solutions, fewer than 3"


# ---------------------------------------------------------------------------------------
# PyTorch sessions
# ---------------------------------------------------------------------------------------

def sessions(text):
    """[(first body line, body)] of the ```pycon blocks."""
    return [(line, body) for lang, line, body, _, _ in make_notebooks.parse_blocks(text) if lang == "pycon"]


WITH_SESSIONS = [p for p in CHAPTERS if sessions(p.read_text())]


@pytest.mark.parametrize("path", WITH_SESSIONS, ids=[p.stem for p in WITH_SESSIONS])
def test_pytorch_sessions_print_what_they_show(path, torch):
    parser, report = doctest.DocTestParser(), io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    namespace = {}
    for line, body in sessions(path.read_text()):
        test = parser.get_doctest(body, namespace, f"{path.name}:{line}", str(path), line - 1)
        runner.run(test, out=report.write, clear_globs=False)
        namespace = test.globs  # DocTest copies its globals: carry them on to the next session
    assert runner.failures == 0, f"{path.name}: a PyTorch session prints something else\n{report.getvalue()}"


def test_the_books_gpt_model_loads_with_chapter_9s_renaming(torch):
    """Chapter 9 says what loads into Transformer from the book's own GPTModel: its LayerNorm's
    scale and shift, renamed. The book's LayerNorm, in a PyTorch twin of the model, proves it."""
    from attention_testing import torch_gpt_twin
    from tinygrad_attn import Tensor, manual_seed
    from tinygrad_attn.nn import Transformer, TransformerConfig

    class BookLayerNorm(torch.nn.Module):  # the book's chapter 4 LayerNorm
        def __init__(self, emb_dim):
            super().__init__()
            self.eps = 1e-5
            self.scale = torch.nn.Parameter(torch.ones(emb_dim))
            self.shift = torch.nn.Parameter(torch.zeros(emb_dim))

        def forward(self, x):
            mean = x.mean(dim=-1, keepdim=True)
            var = x.var(dim=-1, keepdim=True, unbiased=False)
            return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift

    cfg = TransformerConfig(vocab_size=7, context_length=8, d_model=8, num_layers=2, num_heads=2)
    torch.manual_seed(0)
    book = torch_gpt_twin(torch, cfg)
    for owner in [book] + list(book.trf_blocks):
        for name in ("norm1", "norm2", "final_norm"):
            if hasattr(owner, name):
                norm = BookLayerNorm(cfg.d_model).double()
                with torch.no_grad():
                    norm.scale.uniform_(0.5, 1.5)
                    norm.shift.uniform_(-0.5, 0.5)
                setattr(owner, name, norm)
    _, namespace = run_or_fail(DOCS / "09-training-on-the-copy-task.md")
    manual_seed(0)
    ours = Transformer(cfg)
    ours.load_state_dict(namespace["from_book"](book.state_dict()))  # strict: every name matches
    idx = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 6))
    with torch.no_grad():
        expected = book(torch.tensor(idx)).numpy()
    np.testing.assert_allclose(ours(Tensor(idx)).data, expected, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_notebook_is_the_executed_chapter(path):
    target = make_notebooks.NOTEBOOKS / f"{path.stem}.ipynb"
    assert target.exists(), f"{target.relative_to(DOCS.parent)} is missing: run make notebooks"
    printed, _ = run_or_fail(path)
    assert target.read_text() == make_notebooks.dumps(make_notebooks.notebook(path.read_text(), printed)), \
        f"{target.relative_to(DOCS.parent)} is not what {path.name} gives: run make notebooks"


def check_multiline(value, where):
    """nbformat's multi-line strings: a list of lines, each but the last ending in a newline."""
    assert isinstance(value, list) and all(isinstance(s, str) for s in value), f"{where}: not a list of strings"
    assert all(s.endswith("\n") and "\n" not in s[:-1] for s in value[:-1]), f"{where}: not split into lines"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_notebook_has_the_structure_jupyter_reads(path):
    """The parts of the nbformat 4.5 schema that these notebooks use, checked by hand (nbformat
    itself is not a dependency)."""
    nb = json.loads((make_notebooks.NOTEBOOKS / f"{path.stem}.ipynb").read_text())
    assert set(nb) == {"cells", "metadata", "nbformat", "nbformat_minor"}
    assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5)
    assert nb["metadata"]["kernelspec"]["name"] == "python3" and nb["metadata"]["language_info"]["name"] == "python"
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", i) for i in ids)
    codes = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(codes) == len(runnable(path.read_text()))
    for k, cell in enumerate(nb["cells"]):
        where = f"{path.stem}.ipynb cell {k}"
        assert cell["cell_type"] in ("markdown", "code"), where
        assert isinstance(cell["metadata"], dict), where
        check_multiline(cell["source"], f"{where} source")
        assert "".join(cell["source"]).strip(), f"{where}: empty"
        if cell["cell_type"] == "markdown":
            assert set(cell) == {"cell_type", "id", "metadata", "source"}, where
            assert "```python" not in "".join(cell["source"]), f"{where}: python code left in a markdown cell"
        else:
            assert set(cell) == {"cell_type", "id", "metadata", "source", "execution_count", "outputs"}, where
            assert cell["execution_count"] == codes.index(cell) + 1, where
            for out in cell["outputs"]:
                assert set(out) == {"output_type", "name", "text"}, where
                assert (out["output_type"], out["name"]) == ("stream", "stdout"), where
                check_multiline(out["text"], f"{where} output")


def test_notebooks_are_the_chapters():
    have = sorted(p.stem for p in make_notebooks.NOTEBOOKS.glob("*.ipynb"))
    assert have == [p.stem for p in CHAPTERS], "docs/notebooks/ must hold one notebook per chapter: run make notebooks"


def test_notebook_cells_follow_the_page():
    page = ("# T\n\nSee [ch](02-backward-passes.md#a) and ![g](graphs/x.svg), `[c](y.md)`.\n\n```python\nprint(1)\n"
            "```\n\n```text\n1\n```\n\n## Exercises\n\n<details>\n<summary>Solution</summary>\n\n```python\nx = 2\n"
            "```\n\nwhy\n\n</details>\n")
    nb = make_notebooks.notebook(page, ["1\n", ""])
    cells = [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]
    assert cells[0] == ("markdown", "# T\n\nSee [ch](02-backward-passes.ipynb#a) and ![g](../graphs/x.svg), "
                                    "`[c](y.md)`.")
    assert cells[1] == ("code", "print(1)") and nb["cells"][1]["outputs"][0]["text"] == ["1\n"]
    assert cells[2] == ("markdown", "## Exercises")
    assert cells[3][0] == "markdown" and cells[3][1].startswith("**Solution**")
    assert cells[4] == ("code", "x = 2") and nb["cells"][4]["metadata"]["jupyter"]["source_hidden"]
    assert nb["cells"][4]["outputs"] == []
    assert cells[5] == ("markdown", "<details><summary>Solution, explained</summary>\n\nwhy\n\n</details>")


# ---------------------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------------------

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
    assert [(line, code, expected) for line, code, expected, _ in runnable(page)] == [(4, "print(1)", "1"),
                                                                                        (12, "x = 2", None)]
    assert relative_links("[a](x.md) `[b](y.md)` ![c](g/z.svg)\n```python\n[d](w.md)\n```\n[e](https://e.org)") \
        == ["x.md", "g/z.svg"]
    assert solutions("<details>\n<summary>Solution</summary>\n\n```python\nx = 1\n```\n\n</details>\n") \
        == [(1, "Solution", 1)]
