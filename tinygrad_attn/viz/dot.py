"""DOT text for a traced Graph, by plain string building (testable without graphviz).

The drawing grammar: tensors are boxes showing their name, shape, dtype, a summary of the
data (the values themselves for a tiny tensor) and, once computed, of the gradient; ops are
ellipses labelled with the Function's class name and options; edges run input -> op ->
output, left to right, one edge per use (x * x has two). The fill colour gives the role:
parameter (a leaf that requires a gradient; when a model is given, one of its parameters),
input (any other leaf), intermediate, output. Arrays an op keeps outside the graph (a mask,
a condition, integer ids) are dashed input boxes. Module calls are nested clusters. The
backward view (view="backward") reverses the edges and labels each with the shape of the
gradient flowing along it.
"""

import numpy as np

from .graph import Graph, number_text, shape_text
from .tracing import trace

ROLE_COLOURS = {"parameter": "#fdd0a2", "input": "#c6dbef", "intermediate": "#f0f0f0", "output": "#a1d99b"}
OP_COLOUR, MODULE_COLOUR = "#fff7bc", "#dadaeb"
LEGEND = {"parameter": "parameter\n(leaf, requires grad)", "input": "input\n(leaf or constant, no grad)",
          "intermediate": "intermediate", "output": "output"}
MODULE_LEGEND = "module call\n(collapsed)"
TINY = 6  # tensors with at most this many elements show their values


def to_dot(graph, view="forward", title=None, legend=True, **trace_options):
    """DOT text for a Graph, or for the graph behind a Tensor (or a list of Tensors).

    view="forward": input -> op -> output. view="backward": the same nodes, edges reversed and
    labelled with the shape of the gradient flowing along them (dotted where none flows).
    trace_options (names, modules, hide_shape_ops, depth) go to trace() when given a Tensor.
    """
    if view not in ("forward", "backward"):
        raise ValueError(f"view must be 'forward' or 'backward', got {view!r}")
    if not isinstance(graph, Graph):
        graph = trace(*(graph if isinstance(graph, (list, tuple)) else (graph,)), **trace_options)
    elif trace_options:
        raise TypeError(f"options {sorted(trace_options)} apply when tracing a Tensor, not to a Graph")
    backward = view == "backward"
    if backward and title is None:
        title = "backward: each edge carries a gradient (its shape) from the output back towards the leaves"
    graph_attrs = 'rankdir=LR, fontname="Helvetica", fontsize=11' + (f", label={_quote(title)}, labelloc=t"
                                                                     if title else "")
    lines = ["digraph {", f"  graph [{graph_attrs}];", '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    lines += _cluster_lines(graph, backward)
    for e in graph.edges:
        lines.append("  " + _edge_line(e, backward))
    if legend:
        lines += _legend_lines(any(n.kind == "module" for n in graph.nodes))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _cluster_lines(graph, backward):
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
        out = [indent + _node_line(n, backward) for n in members.get(path, [])]
        for child in children.get(path, []):
            if used(child):
                out.append(f"{indent}subgraph {_quote('cluster_' + child)} {{")
                out.append(f'{indent}  label={_quote(graph.clusters[child][0])}; labeljust=l; style="rounded,dashed"; '
                           'color="#888888"; fontsize=10;')
                out += emit(child, indent + "  ")
                out.append(indent + "}")
        return out

    return emit(None, "  ")


def _node_line(n, backward):
    if n.kind == "op":
        label = n.label + ("Backward" if backward else "") + (f"\n{n.detail}" if n.detail else "")
        return f'{n.id} [shape=ellipse, style=filled, fillcolor="{OP_COLOUR}", label={_quote(label)}];'
    if n.kind == "module":
        label = _quote(f"{n.label}\n{n.detail}")
        return f'{n.id} [shape=box3d, style=filled, fillcolor="{MODULE_COLOUR}", label={label}];'
    lines = [n.label] if n.label else []
    lines.append(f"{shape_text(n.shape)} {n.dtype}")
    lines += _summary(n.data)
    if n.grad is not None:
        grad = _summary(n.grad)
        lines += ["grad " + grad[0]] + grad[1:]
    style = '"filled,dashed"' if n.obj is None else "filled"  # dashed: a constant an op holds
    label = _quote("\n".join(lines))
    return f'{n.id} [shape=box, style={style}, fillcolor="{ROLE_COLOURS[n.role]}", label={label}];'


def _edge_line(e, backward):
    if not backward:
        return f"{e.src} -> {e.dst}" + (f" [label={_quote(e.note)}];" if e.note else ";")
    if not e.grad:
        return f'{e.dst} -> {e.src} [style=dotted, arrowhead=none, color="#aaaaaa"];'
    label = f"grad {shape_text(e.shape)}" + (f"\n({e.note})" if e.note not in ("", shape_text(e.shape)) else "")
    return f'{e.dst} -> {e.src} [label={_quote(label)}, color="#c0392b"];'


def _legend_lines(with_modules):
    lines = ["  subgraph cluster_legend {", '    label="legend"; style=rounded; color="#bbbbbb"; fontsize=10;']
    for role, text in LEGEND.items():
        lines.append(f'    legend_{role} [shape=box, style=filled, fillcolor="{ROLE_COLOURS[role]}", '
                     f"label={_quote(text)}];")
    lines.append(f'    legend_op [shape=ellipse, style=filled, fillcolor="{OP_COLOUR}", label="op"];')
    keys = [f"legend_{role}" for role in LEGEND] + ["legend_op"]
    if with_modules:
        lines.append(f'    legend_module [shape=box3d, style=filled, fillcolor="{MODULE_COLOUR}", '
                     f'label={_quote(MODULE_LEGEND)}];')
        keys.append("legend_module")
    lines.append("    " + " -> ".join(keys) + " [style=invis];")  # one row, left to right
    lines.append("  }")
    return lines


def _quote(text):
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
