"""Rendering DOT text into a picture with graphviz, or saying how to install it.

render() always writes the .dot file; with graphviz's `dot` program (and its Python package)
it also draws an SVG or PNG. Without them it prints how to install them and keeps the .dot.
"""

import shutil
import sys
from pathlib import Path

from .dot import to_dot

INSTALL_HINT = """graphviz's `dot` program was not found, so only {dot} was written. Install it with
    sudo apt-get install -y graphviz      (Debian/Ubuntu)
    brew install graphviz                 (macOS)
and run `dot -T{fmt} {dot} -o {out}`, or draw again."""


def render(graph, path, format="svg", **options):
    """Write `path`.dot and draw it into `path`.svg (or .png with format="png"); returns the picture's Path.

    `graph` is a Graph or a Tensor (or list of Tensors); options go to to_dot/trace. Without
    graphviz's `dot` program (or its Python package) it prints how to install it and returns
    the Path of the .dot file, which it always writes.
    """
    if format not in ("svg", "png"):
        raise ValueError(f"format must be 'svg' or 'png', got {format!r}")
    text = to_dot(graph, **options)
    path = Path(path)
    if path.suffix in (".dot", ".svg", ".png"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    dot_path, out_path = path.with_name(path.name + ".dot"), path.with_name(f"{path.name}.{format}")
    dot_path.write_text(text)
    hint = INSTALL_HINT.format(dot=dot_path, fmt=format, out=out_path)
    if shutil.which("dot") is None:
        print(hint, file=sys.stderr)
        return dot_path
    try:
        import graphviz
    except ImportError:
        print(f"the graphviz Python package is missing: pip install graphviz (or pip install -e '.[draw]'). "
              f"Only {dot_path} was written.", file=sys.stderr)
        return dot_path
    try:
        out_path.write_bytes(graphviz.pipe("dot", format, text.encode()))
    except graphviz.ExecutableNotFound:
        print(hint, file=sys.stderr)
        return dot_path
    return out_path
