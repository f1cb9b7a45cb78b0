"""DOT text for a traced Graph, by plain string building (testable without graphviz).

The drawing grammar: tensors are boxes showing their name and shape (and dtype, unless it is
float32, the default), with data="summary" a summary of the data (the values themselves for a
tiny tensor) and, once computed, of the gradient; with data="cells" a small matrix is drawn
as a grid of cells coloured by value. Ops are ellipses labelled with the Function's class name
and options, or, in a compact graph (simplify.merge_outputs), rounded boxes over the tensor
they make; a run of views is one small grey box of steps. Edges run input -> op -> output,
one edge per use (x * x has two), top to bottom (rankdir="TB") or left to right ("LR"). The
fill colour gives the role: parameter (a leaf that requires a gradient; when a model is
given, one of its parameters), input (any other leaf), intermediate, output. Arrays an op
keeps outside the graph (a mask, a condition, integer ids) are dashed input boxes. Module
calls are nested clusters, or boxes once collapsed. The title, and a legend of one row, sit
above the graph in its label, outside the layout. The backward view (view="backward") keeps
the forward layout and turns the arrows round: each edge carries the gradient back, labelled
with its shape (dotted where none flows), and the caption says which way that is.
show_saved=True adds beside each op (or collapsed call) the arrays it keeps for backward, with
their sizes: the activation memory of the graph.
"""

import textwrap

import numpy as np

from .graph import Graph, number_text, shape_text
from .tables import cell, cell_grid, html, table
from .tracing import trace

ROLE_COLOURS = {"parameter": "#fdd0a2", "input": "#c6dbef", "intermediate": "#f0f0f0", "output": "#a1d99b"}
OP_COLOUR, MODULE_COLOUR, SAVED_COLOUR, GRAD_COLOUR = "#fff7bc", "#dadaeb", "#fee6ce", "#c0392b"
LEGEND = {"parameter": "parameter\n(leaf, requires grad)", "input": "input or constant\n(no grad)",
          "intermediate": "intermediate", "output": "output"}
FLOW = {"TB": ("top", "bottom"), "BT": ("bottom", "top"), "LR": ("left", "right"), "RL": ("right", "left")}
DATA = ("summary", "cells", None)
TINY = 6  # tensors with at most this many elements show their values
TITLE_WIDTH = 70  # characters a title line may have before it wraps: a long title must not widen the picture


def to_dot(graph, view="forward", title=None, legend=True, rankdir="TB", name=None, data="summary",
           show_attrs=True, show_saved=False, **trace_options):
    """DOT text for a Graph, or for the graph behind a Tensor (or a list of Tensors).

    view="forward": input -> op -> output. view="backward": the same layout, each arrow turned
    round and labelled with the shape of the gradient flowing along it (dotted where none flows).
    rankdir: "TB" (top to bottom), "LR", "BT" or "RL". name: the graph's name (the SVG's title).
    data: "summary", "cells" (small matrices as grids of coloured cells) or None (shapes only).
    show_attrs: ops show their options (dim=-1); show_saved: ops show the arrays kept for backward.
    trace_options (names, modules, hide_shape_ops, depth) go to trace() when given a Tensor.
    """
    name, body = dot_body(graph, view, title, legend, rankdir, name, data, show_attrs, show_saved, **trace_options)
    return f"digraph {quote(name)} {{\n" + "".join(f"  {line}\n" for line in body) + "}\n"


def dot_body(graph, view="forward", title=None, legend=True, rankdir="TB", name=None, data="summary",
             show_attrs=True, show_saved=False, **trace_options):
    """(name, lines inside the braces) of to_dot's text: what a graphviz.Digraph is built from."""
    if view not in ("forward", "backward"):
        raise ValueError(f"view must be 'forward' or 'backward', got {view!r}")
    if rankdir not in FLOW:
        raise ValueError(f"rankdir must be one of {sorted(FLOW)}, got {rankdir!r}")
    if data not in DATA:
        raise ValueError(f"data must be one of {DATA}, got {data!r}")
    if not isinstance(graph, Graph):
        graph = trace(*(graph if isinstance(graph, (list, tuple)) else (graph,)), **trace_options)
    elif trace_options:
        raise TypeError(f"options {sorted(trace_options)} apply when tracing a Tensor, not to a Graph")
    backward = view == "backward"
    texts = (title.split("\n") if title else []) + _captions(graph, backward, rankdir, show_saved)
    graph_attrs = f'rankdir={rankdir}, newrank=true, fontname="Helvetica", fontsize=12, nodesep=0.3, ranksep=0.35'
    if texts or legend:
        graph_attrs += f", labelloc=t, label=<{title_table(texts, _legend(graph) if legend else None)}>"
    body = [f"graph [{graph_attrs}];", 'node [fontname="Helvetica", fontsize=10];',
            'edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    style = dict(backward=backward, data=data, show_attrs=show_attrs, show_saved=show_saved)
    body += _cluster_lines(graph, style, rankdir in ("TB", "BT"))
    uses = {}
    for e in graph.edges:
        uses[e.src] = uses.get(e.src, 0) + 1
    body += [_edge_line(e, backward, uses[e.src]) for e in graph.edges]
    return name or (title.split("\n")[0] if title else "computation graph"), body


def title_table(texts, below=None):
    """The graph's label: the texts wrapped to TITLE_WIDTH characters a line, and `below` (HTML) under them."""
    lines = [line for text in texts for line in textwrap.wrap(text, TITLE_WIDTH) or [""]]
    return table([[cell(line)] for line in lines] + ([[f"<TD>{below}</TD>"]] if below else []), padding=1)


def _captions(graph, backward, rankdir, show_saved):
    """The lines under the title that say how to read the picture, generated so they cannot disagree with it."""
    out = []
    if backward:
        start, end = FLOW[rankdir]
        out.append(f"backward: gradients flow against the forward arrows, from the output at the {end} back to "
                   f"the leaves at the {start}; each red edge is labelled with the shape of its gradient")
    if show_saved:
        arrays = {id(a): a for n in graph.nodes for _, a, _ in n.saved}
        new = {id(a): a for n in graph.nodes for _, a, what in n.saved if not what}
        count, size = len(arrays), _bytes(sum(a.nbytes for a in new.values()))
        out.append(f"saved for backward: {count} array{'s' * (count != 1)}; {size} of them are new, the rest the "
                   "ops' own inputs and outputs, which the graph keeps anyway")
    return out


def _cluster_lines(graph, style, reverse):
    """Node lines, nested in one subgraph cluster per module call (in the order the calls began)."""
    members, children = {}, {}
    for n in graph.nodes:
        path = n.module if n.module in graph.clusters else None
        members.setdefault(path, []).append(n)
    for path, (_, parent) in graph.clusters.items():
        children.setdefault(parent if parent in graph.clusters else None, []).append(path)

    def used(path):
        return path in members or any(used(c) for c in children.get(path, []))

    def emit(path, indent):
        # dot (2.43, newrank) lays a top-to-bottom rank out right to left in the order it reads the
        # nodes: given in reverse, the first call (W_query, head 0) comes out on the left, as it reads.
        order = (lambda xs: xs[::-1]) if reverse else (lambda xs: xs)
        out = [indent + line for n in order(members.get(path, [])) for line in _node_lines(n, **style)]
        for child in order(children.get(path, [])):
            if used(child):
                out.append(f"{indent}subgraph {quote('cluster_' + child)} {{")
                out.append(f'{indent}  label={quote(graph.clusters[child][0])}; labeljust=l; style="rounded,dashed"; '
                           'color="#888888"; fontsize=10;')
                out += emit(child, indent + "  ")
                out.append(indent + "}")
        return out

    return emit(None, "")


def _node_lines(n, backward, data, show_attrs, show_saved):
    if n.kind == "op":
        label = [n.label + ("Backward" if backward else "")] + (n.detail.split("\n") if n.detail and show_attrs else [])
        if n.makes is None:
            lines = [f'{n.id} [shape=ellipse, style=filled, fillcolor="{OP_COLOUR}", label={_label(label)}];']
        else:  # compact: the op over the tensor it makes
            grid = cell_grid(n.makes.data) if data == "cells" else None
            made = _tensor_lines(n.makes, None if grid else data, one_line=True)
            label = _label(label + ["→ " + made[0]] + made[1:], grid)
            lines = [f'{n.id} [shape=box, style="rounded,filled", fillcolor="{OP_COLOUR}", label={label}];']
        return lines + (_saved_note(n) if show_saved else [])
    if n.kind == "views":
        return [f'{n.id} [shape=box, style="rounded,filled", fillcolor="#fafafa", color="#aaaaaa", fontsize=9, '
                f'label={quote(n.detail)}];']
    if n.kind == "module":
        return [f'{n.id} [shape=box3d, style=filled, fillcolor="{MODULE_COLOUR}", label={_label([n.label, n.detail])}];'
                ] + (_saved_note(n) if show_saved else [])
    style = '"filled,dashed"' if n.obj is None else "filled"  # dashed: a constant an op holds
    grid = cell_grid(n.data) if data == "cells" else None
    label = _label(_tensor_lines(n, None if grid else data), grid)
    return [f'{n.id} [shape=box, style={style}, fillcolor="{ROLE_COLOURS[n.role]}", label={label}];']


def _label(lines, grid=None):
    """A node's label: its lines of text and, under them, a grid of cells (HTML-like), if any."""
    if grid is None:
        return quote("\n".join(lines))
    return "<" + table([[cell(line)] for line in lines] + [[f"<TD>{grid}</TD>"]]) + ">"


def _tensor_lines(n, data, one_line=False):
    """Name, shape (dtype unless float32), on one line or two, and with data a summary of the data and gradient."""
    head = [n.label] if n.label else []
    head.append(shape_text(n.shape) + ("" if n.dtype == "float32" else f" {n.dtype}"))
    lines = [" ".join(head)] if one_line else head
    if data or n.data.size == 1:  # a scalar shows its value even in a drawing of shapes: "scalar 2.83"
        lines += _summary(n.data)
        if n.grad is not None:
            grad = _summary(n.grad)
            lines += ["grad " + grad[0]] + grad[1:]
    return lines


def _saved_note(n):
    """A note beside an op (or a collapsed call) listing the arrays it keeps for backward, with their sizes."""
    if not n.saved:
        return []
    lines = ["saved for backward:"]
    lines += [f"{key} {shape_text(a.shape)} {_bytes(a.nbytes)}" + (f" ({what})" if what else "") for key, a, what in n.saved]
    return [f'{n.id}_saved [shape=note, style=filled, fillcolor="{SAVED_COLOUR}", fontsize=9, label={_label(lines)}];',
            f'{n.id} -> {n.id}_saved [dir=none, style=dashed, color="#e6550d"];',
            f"{{ rank=same; {n.id}; {n.id}_saved; }}"]


def _bytes(n):
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MiB"


def _edge_line(e, backward, uses):
    """A tensor used several times pulls its uses close (weight): the projections of one input line up side by side."""
    attrs = [f"label={quote(e.note)}"] if e.note else []
    if backward and e.grad:
        note = f"\n{e.note}" if e.note else ""
        attrs = [f"label={quote(f'grad {shape_text(e.shape)}{note}')}", "dir=back", f'color="{GRAD_COLOUR}"',
                 f'fontcolor="{GRAD_COLOUR}"']
    elif backward:
        attrs += ["style=dotted", "dir=none", 'color="#aaaaaa"']
    if uses > 1:
        attrs.append("weight=3")
    return f"{e.src} -> {e.dst}" + (f" [{', '.join(attrs)}];" if attrs else ";")


def _legend(graph):
    """One row of coloured cells under the title, outside the layout, so that it widens nothing: the
    kinds of node the graph has. Sized by hand (about 5 points a character), since graphviz would
    stretch it to the width of the title."""
    roles = {n.role for n in graph.nodes if n.kind == "tensor"}
    cells = [(ROLE_COLOURS[role], text, "") for role, text in LEGEND.items() if role in roles]
    cells.append((OP_COLOUR, "op", ' STYLE="ROUNDED"'))
    if any(n.kind == "module" for n in graph.nodes):
        cells.append((MODULE_COLOUR, "module call\n(collapsed)", ""))
    widths = [5 * max(len(line) for line in text.split("\n")) + 12 for _, text, _ in cells]
    height = 11 * max(text.count("\n") + 1 for _, text, _ in cells) + 6
    tds = "".join(f'<TD BGCOLOR="{c}"{extra} FIXEDSIZE="TRUE" WIDTH="{w}" HEIGHT="{height}"><FONT POINT-SIZE="9">'
                  f"{html(text)}</FONT></TD>" for (c, text, extra), w in zip(cells, widths))
    size = f'FIXEDSIZE="TRUE" WIDTH="{sum(widths) + 3 * (len(cells) + 1)}" HEIGHT="{height + 6}"'
    return f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="3" CELLPADDING="0" {size}><TR>{tds}</TR></TABLE>'


def quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _values(a):
    if a.ndim == 0:
        return number_text(a.item() if a.dtype.kind != "b" else bool(a))
    return "[" + ", ".join(_values(row) for row in a) + "]"


def _summary(a):
    """Lines describing an array: its values if tiny, a pattern for a small boolean matrix, else a range."""
    if a.size == 0:
        return ["empty"]
    if a.size <= TINY:
        return [_values(a)]
    if a.dtype.kind == "b":
        matrix = a.reshape(a.shape[-2:]) if a.ndim >= 2 and a.size == a.shape[-2] * a.shape[-1] else None
        if matrix is not None and matrix.shape[0] <= 8 and matrix.shape[1] <= 8:  # e.g. a causal mask
            return ["1 = True"] + ["".join("1" if v else "0" for v in row) for row in matrix]  # digits align
        return [f"{int(a.sum())}/{a.size} True"]
    if a.dtype.kind in "iu":
        return [f"[{number_text(a.min())}, {number_text(a.max())}]"]
    finite = a[np.isfinite(a)]
    mean = f" mean {number_text(finite.mean())}" if finite.size else ""
    return [f"[{number_text(a.min())}, {number_text(a.max())}]{mean}"]
