"""Matrices as graphviz HTML-like tables: one cell per entry, coloured and optionally written in.

graphviz lays out and renders these tables like any node (SVG, or PNG at any width), so a
matrix inside a graph node (dot.py's data="cells") and the conceptual figures (concepts.py)
share one way of drawing numbers.
"""

from xml.sax.saxutils import escape

import numpy as np

from .plots import viridis

CELLS_MAX = 12  # a matrix with more rows or columns than this is summarised, not drawn


def html(text):
    """Text made safe inside an HTML-like label, its newlines as line breaks."""
    return escape(str(text), {'"': "&quot;"}).replace("\n", "<BR/>")


def value_colours(a):
    """Colour per entry: viridis from the smallest to the largest finite value, light grey for -inf/nan."""
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    return np.vectorize(lambda v: viridis((v - lo) / span) if np.isfinite(v) else "#e0e0e0", otypes=[object])(a)


def text_colour(fill):
    """Black or white, whichever reads on the fill colour (#rrggbb)."""
    r, g, b = (int(fill[k:k + 2], 16) for k in (1, 3, 5))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def table(rows, border=0, spacing=0, padding=2, extra=""):
    """An HTML-like <TABLE> from rows of cell strings (<TD>...</TD>)."""
    body = "".join("<TR>" + "".join(r) + "</TR>" for r in rows)
    return (f'<TABLE BORDER="{border}" CELLBORDER="0" CELLSPACING="{spacing}" CELLPADDING="{padding}"{extra}>'
            f"{body}</TABLE>")


def cell(text="", fill=None, width=None, height=None, port=None, extra=""):
    """One <TD>: text (escaped) on a fill colour, fixed size in points if given, a port to draw edges to."""
    attrs = f' BGCOLOR="{fill}"' if fill else ""
    if width:
        attrs += f' WIDTH="{width}" HEIGHT="{height or width}" FIXEDSIZE="TRUE"'
    attrs += f' PORT="{port}"' if port else ""
    font = f'<FONT COLOR="{text_colour(fill)}">' if fill and text != "" else ""
    return f"<TD{attrs}{extra}>{font}{html(text)}{'</FONT>' if font else ''}</TD>"


def cell_grid(a, size=10):
    """The entries of a small array (leading 1-dims dropped, at most 2-D, CELLS_MAX a side) as a grid
    of coloured cells `size` points wide; None for a scalar or a larger array."""
    if a is None or a.dtype.kind not in "fiub":
        return None
    m = a.reshape([n for n in a.shape if n != 1] or [1])
    m = m[None, :] if m.ndim == 1 else m
    if a.size < 2 or m.ndim != 2 or max(m.shape) > CELLS_MAX:
        return None
    colours = value_colours(m)
    width, height = (n * (size + 1) + 3 for n in m.shape[::-1])  # fixed: a wider label must not spread the cells
    return table([[cell(fill=c, width=size) for c in row] for row in colours], border=1, spacing=1, padding=0,
                 extra=f' COLOR="#666666" FIXEDSIZE="TRUE" WIDTH="{width}" HEIGHT="{height}"')


def matrix(texts, fills, title=None, rows=None, cols=None, width=30, ports=None):
    """A matrix as a table: `title` above, column labels `cols` on top, row labels `rows` on the
    left, one cell per entry with its text and fill (2-D lists or arrays); ports[i][j] names a
    cell for edges (node:port)."""
    texts, fills = np.asarray(texts, dtype=object), np.asarray(fills, dtype=object)
    n_rows, n_cols = texts.shape
    lead = [cell()] if rows is not None else []
    out = [[f'<TD COLSPAN="{n_cols + len(lead)}">{html(title)}</TD>']] if title else []
    if cols is not None:
        out.append(lead + [cell(c, width=width, height=16) for c in cols])
    for i in range(n_rows):
        out.append(([cell(rows[i], extra=' ALIGN="RIGHT"')] if rows is not None else []) +
                   [cell(texts[i, j], fills[i, j], width, 20, ports[i][j] if ports else None) for j in range(n_cols)])
    return table(out, spacing=1, padding=1)


def side_by_side(parts, gap=8):
    """Tables (or texts) next to each other in one row, `gap` points apart."""
    return table([[f"<TD>{p}</TD>" for p in parts]], spacing=gap)
