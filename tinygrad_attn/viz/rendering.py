"""Rendering DOT text into a picture with graphviz, or saying how to install it.

A Drawing is DOT text and the size to show it at: Jupyter displays it inline (_repr_svg_),
save() writes the .dot file and, with graphviz's `dot` program and its Python package, an
SVG or a PNG. Without them it keeps the .dot and says how to install them, once per process
(a gallery of twenty diagrams need not say it twenty times).
"""

import shutil
import sys
from pathlib import Path

from .dot import to_dot

INSTALL_HINT = """graphviz's `dot` program was not found, so only the .dot files are written. Install it with
    sudo apt-get install -y graphviz      (Debian/Ubuntu)
    brew install graphviz                 (macOS)
and draw again, or run `dot -Tsvg file.dot -o file.svg`."""
PACKAGE_HINT = ("the graphviz Python package is missing, so only the .dot files are written: pip install graphviz "
                "(or pip install -e '.[draw]')")
FORMATS = ("svg", "png")
DPI = 96  # graphviz's pixels per inch for PNG; SVG sizes are in points (72 an inch), shown at 96 px an inch
_said = set()


class GraphvizMissing(RuntimeError):
    """graphviz's `dot` program or its Python package is not installed; the message says how to install it."""


def say_once(text):
    """Print `text` to stderr the first time it is said in this process."""
    if text not in _said:
        _said.add(text)
        print(text, file=sys.stderr)


def pipe(source, format):
    """The picture of the DOT text `source` as bytes, format "svg" or "png"; GraphvizMissing without graphviz."""
    if shutil.which("dot") is None:
        raise GraphvizMissing(INSTALL_HINT)
    try:
        import graphviz
    except ImportError:
        raise GraphvizMissing(PACKAGE_HINT) from None
    try:
        return graphviz.pipe("dot", format, source.encode())
    except graphviz.ExecutableNotFound:
        raise GraphvizMissing(INSTALL_HINT) from None


class Drawing:
    """A diagram: DOT text, shown inline in Jupyter, saved as .dot plus .svg or .png.

    size: (width, height) in pixels to scale the picture to, up or down, keeping its aspect
    ratio, until it fits (None for one side: no bound on it); None draws at graphviz's natural
    size. graph: the traced Graph drawn, if any, for inspection.
    """

    def __init__(self, source, size=None, graph=None):
        if size is not None and (len(size) != 2 or all(s is None for s in size)
                                 or any(s is not None and not s > 0 for s in size)):
            raise ValueError(f"size must be (width, height) in pixels, one of them may be None; got {size!r}")
        self.dot, self.size, self.graph = source, size, graph

    @property
    def source(self):
        """The DOT text graphviz renders: the drawing's, with the target size added."""
        if self.size is None:
            return self.dot
        inches = ",".join(f"{(s or 100 * DPI) / DPI:.4g}" for s in self.size)
        head, rest = self.dot.split("\n", 1)
        return f'{head}\n  graph [size="{inches}!", dpi={DPI}];\n{rest}'

    def svg(self):
        return pipe(self.source, "svg").decode()

    def png(self):
        return pipe(self.source, "png")

    def save(self, path, format=None):
        """Write `path`.dot and `path`.svg or .png (format, else the suffix of path, else svg); the picture's Path.

        Without graphviz it says (once) how to install it and returns the Path of the .dot file,
        which it always writes.
        """
        path = Path(path)
        format = format or (path.suffix[1:] if path.suffix in (".svg", ".png") else "svg")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        if path.suffix in (".dot", ".svg", ".png"):
            path = path.with_suffix("")
        path.parent.mkdir(parents=True, exist_ok=True)
        dot_path, out_path = path.with_name(path.name + ".dot"), path.with_name(f"{path.name}.{format}")
        dot_path.write_text(self.source)
        try:
            out_path.write_bytes(pipe(self.source, format))
        except GraphvizMissing as e:
            say_once(str(e))
            return dot_path
        return out_path

    def _repr_svg_(self):
        """Jupyter's inline picture; None (Jupyter then shows repr()) without graphviz."""
        try:
            return self.svg()
        except GraphvizMissing as e:
            say_once(str(e))
            return None

    def __repr__(self):
        lines = self.dot.count("\n")
        return f"<Drawing: {lines} lines of DOT; .save('name.svg') or .save('name.png') draws it>"


def render(graph, path, format="svg", size=None, **options):
    """Write `path`.dot and draw it into `path`.svg (or .png with format="png"); returns the picture's Path.

    `graph` is a Graph or a Tensor (or list of Tensors); options go to to_dot/trace; size as
    Drawing's. Without graphviz it says how to install it and returns the Path of the .dot file.
    """
    return Drawing(to_dot(graph, **options), size).save(path, format)
