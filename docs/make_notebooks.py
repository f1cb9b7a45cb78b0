"""The chapters as Jupyter notebooks, generated from the markdown, which stays the one source.

    python docs/make_notebooks.py           (what `make notebooks` runs) rewrite docs/notebooks/
    python docs/make_notebooks.py --check   exit 1, naming them, if a notebook is not what the chapters give

Each docs/NN-*.md becomes docs/notebooks/NN-*.ipynb, plain nbformat 4.5 JSON written here (no
dependency): a markdown cell per run of prose, a code cell per ```python block with, as its
output, what the block prints when the chapter is executed the way tests/test_docs.py executes
it (in order, one namespace, in a fresh temporary directory, tinygrad_attn seeded as a fresh
interpreter). The ```text block that shows that output on the page is not repeated as prose.
A solution (a <details> block) becomes code cells whose source and output start collapsed.
Relative links are rewritten for the notebooks' folder: graphs/x.svg -> ../graphs/x.svg, a
chapter NN-x.md -> NN-x.ipynb.
"""

import contextlib
import io
import json
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

DOCS = Path(__file__).resolve().parent
NOTEBOOKS = DOCS / "notebooks"
CHAPTER = re.compile(r"^[0-9][0-9]-.*\.md$")
FENCE = re.compile(r"^```(\w*)\s*$")
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")
KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}


def chapters():
    return sorted(p for p in DOCS.glob("*.md") if CHAPTER.match(p.name))


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
    """[(line, code, expected stdout or None, (first, last) line index of the text block or None)]:
    each python block, with the ```text block right after it (only blank lines between)."""
    blocks, lines, out = parse_blocks(text), text.splitlines(), []
    for k, (lang, line, body, _, close) in enumerate(blocks):
        if lang != "python":
            continue
        expected = span = None
        if k + 1 < len(blocks):
            nlang, _, nbody, nopen, nclose = blocks[k + 1]
            if nlang == "text" and all(not s.strip() for s in lines[close + 1:nopen]):
                expected, span = nbody, (nopen, nclose)
        out.append((line, body, expected, span))
    return out


def normalise(s):
    """Printed output as the page shows it: no trailing whitespace on a line, no blank lines around."""
    return "\n".join(line.rstrip() for line in s.strip("\n").splitlines()).strip("\n")


class BlockError(RuntimeError):
    """A python block of a chapter raised."""


def execute(path):
    """Run the chapter's python blocks as the tests do; returns ([stdout of each block], namespace).

    Raises BlockError naming the chapter's line and giving the traceback if a block raises.
    """
    import tinygrad_attn  # here, so that --help and the parsing work without the package

    rel = path.relative_to(DOCS.parent)
    namespace, printed, cwd = {"__name__": "__main__"}, [], os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            tinygrad_attn.manual_seed(0)  # the generator as a new interpreter has it
            for line, code, _, _ in runnable(path.read_text()):
                compiled = compile("\n" * (line - 1) + code, str(rel), "exec")  # tracebacks give the .md line
                stdout = io.StringIO()
                try:
                    with contextlib.redirect_stdout(stdout):
                        exec(compiled, namespace)
                except Exception as e:
                    raise BlockError(f"{rel}: the python block at line {line} raised\n{traceback.format_exc()}") from e
                printed.append(stdout.getvalue())
        finally:
            os.chdir(cwd)
    return printed, namespace


def notebook_link(target, names):
    """A link of a chapter, as seen from docs/notebooks/."""
    if SCHEME.match(target) or target.startswith("#"):
        return target
    page, _, anchor = target.partition("#")
    if page in names:
        return Path(page).stem + ".ipynb" + (f"#{anchor}" if anchor else "")
    return "../" + target


def rewrite_links(lines, names):
    """Rewrite the relative links of markdown lines, leaving code (fences, `spans`) alone."""
    out, inside = [], False
    for line in lines:
        if FENCE.match(line) or (inside and line.rstrip() == "```"):
            inside = not inside
        elif not inside:
            parts = re.split(r"(`[^`]*`)", line)  # odd parts are inline code
            line = "".join(p if i % 2 else LINK.sub(lambda m: m[1] + notebook_link(m[2], names) + m[3], p)
                           for i, p in enumerate(parts))
        out.append(line)
    return out


def source(text):
    """nbformat's multi-line string: a list of lines, each but the last ending in a newline."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def notebook(text, printed):
    """The notebook (a dict, nbformat 4.5) of a chapter's text, given what each python block printed."""
    lines, names = text.splitlines(), {p.name for p in chapters()}
    code = {opening: (body, close) for lang, _, body, opening, close in parse_blocks(text) if lang == "python"}
    outputs = {line - 2: (out, span) for (line, _, _, span), out in zip(runnable(text), printed)}  # by opening fence
    cells, prose, in_solution = [], [], False

    def add(cell_type, body, **extra):
        cells.append({"cell_type": cell_type, "id": f"cell-{len(cells) + 1}", "metadata": extra.pop("metadata", {}),
                      "source": source(body), **extra})

    def flush():
        body = "\n".join(rewrite_links(prose, names)).strip("\n")
        if body:
            add("markdown", f"<details><summary>Solution, explained</summary>\n\n{body}\n\n</details>"
                if in_solution else body)
        prose.clear()

    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if i in code:
            flush()
            body, close = code[i]
            out, span = outputs[i]
            count = sum(c["cell_type"] == "code" for c in cells) + 1
            stream = [{"output_type": "stream", "name": "stdout", "text": source(normalise(out) + "\n")}] \
                if normalise(out) else []
            hidden = {"jupyter": {"source_hidden": True, "outputs_hidden": True}, "tags": ["solution"]}
            add("code", body, metadata=hidden if in_solution else {}, execution_count=count, outputs=stream)
            i = (span[1] if span else close) + 1  # the ```text block is the cell's output, not prose
            continue
        if FENCE.match(lines[i]):  # another fenced block: prose, kept whole
            end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```")
            prose.extend(lines[i:end + 1])
            i = end + 1
            continue
        if stripped == "<details>":
            flush()
            in_solution = True
        elif stripped.startswith("<summary>"):
            summary = re.sub(r"</?summary>", "", stripped)
            add("markdown", f"**{summary}** (collapsed below: click a cell's bar or its `...` to open it)")
        elif stripped == "</details>":
            flush()
            in_solution = False
        else:
            prose.append(lines[i])
        i += 1
    flush()
    return {"cells": cells, "metadata": KERNEL, "nbformat": 4, "nbformat_minor": 5}


def dumps(nb):
    """The JSON text as Jupyter itself writes it (indent 1, sorted keys), so that saving a notebook
    from Jupyter without changes leaves the file as it was."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv):
    check = "--check" in argv
    NOTEBOOKS.mkdir(exist_ok=True)
    stale = []
    for path in chapters():
        printed, _ = execute(path)
        text = dumps(notebook(path.read_text(), printed))
        target = NOTEBOOKS / f"{path.stem}.ipynb"
        if not target.exists() or target.read_text() != text:
            stale.append(target.relative_to(DOCS.parent))
            if not check:
                target.write_text(text)
    if check and stale:
        print("out of date (run make notebooks):", *stale, sep="\n  ")
        return 1
    print(("up to date: " if check else "wrote ") + f"{len(chapters())} notebooks in {NOTEBOOKS.relative_to(DOCS.parent)}/"
          + (f" ({len(stale)} changed)" if not check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
