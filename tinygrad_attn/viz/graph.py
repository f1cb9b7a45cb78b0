"""Drawing the computation graph behind a tensor, forward or backward.

Three steps, so that all but the last work without graphviz installed:

  trace(*roots)  walks the graph into a `Graph` of nodes and edges in a deterministic order
                 (ids t0, t1, ... for tensors and op0, op1, ... for ops, given in walk order);
  to_dot(...)    turns it into DOT text, by plain string building;
  render(...)    writes the .dot file and, when graphviz's `dot` program is installed, an SVG
                 (or PNG). Without `dot` it prints how to install it and keeps the .dot file.

The drawing grammar: tensors are boxes showing their name, shape, dtype, a summary of the
data (the values themselves for a tiny tensor) and, once computed, of the gradient; ops are
ellipses labelled with the Function's class name; edges run input -> op -> output, left to
right, one edge per use (x * x has two). The fill colour gives the role: parameter (a leaf
that requires a gradient; when a model is given, one of its parameters), input (any other
leaf), intermediate, output. Arrays an op keeps outside the graph (the mask of MaskedFill,
the condition of Where, the integer ids of an embedding lookup) are drawn as dashed input
boxes.

Gradients appear only where they were computed, never as a made-up 0. backward() gives
.grad to leaves; an intermediate tensor keeps its gradient only if t.retain_grad() was
called before backward(), or call `retain_grads(loss)` to mark them all. backward() also
frees the graph: to draw after it, call backward(retain_graph=True); drawing a freed graph
raises an error saying so. The backward view (view="backward") reverses the edges and labels
each with the shape of the gradient flowing along it.

With record_modules (modules.py) the tensors each module call made are grouped into a
cluster named after the module's path, `depth=` collapses module calls below a level into
single boxes, and `hide_shape_ops=True` folds Reshape/Permute/Expand and basic-slice Index
into the edges, so that a whole transformer fits on a readable page.
"""

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..tensor import Tensor, _FREED, topological_order

FREED_MESSAGE = ("cannot draw this graph: backward() has freed it. Call backward(retain_graph=True) to draw after "
                 "backward; to see the gradients of intermediate tensors as well, call retain_grad() on them (or "
                 "tinygrad_attn.viz.retain_grads(loss) on the output) before backward().")

INSTALL_HINT = """graphviz's `dot` program was not found, so only {dot} was written. Install it with
    sudo apt-get install -y graphviz      (Debian/Ubuntu)
    brew install graphviz                 (macOS)
and run `dot -T{fmt} {dot} -o {out}`, or draw again."""

ROLE_COLOURS = {"parameter": "#fdd0a2", "input": "#c6dbef", "intermediate": "#f0f0f0", "output": "#a1d99b"}
OP_COLOUR, MODULE_COLOUR = "#fff7bc", "#dadaeb"
LEGEND = {"parameter": "parameter\n(leaf, requires grad)", "input": "input\n(leaf or constant, no grad)",
          "intermediate": "intermediate", "output": "output"}
MODULE_LEGEND = "module call\n(collapsed)"

SHAPE_OPS = ("Reshape", "Permute", "Expand", "Index")  # Index only with basic slices: views that move no number
CONSTANTS = {"MaskedFill": ("mask", "mask"), "Where": ("cond", "condition")}  # op -> (attribute, label)
TINY = 6  # tensors with at most this many elements show their values


@dataclass
class Node:
    """A box (tensor), an ellipse (op) or, after collapsing, a module call drawn as one box."""

    id: str
    kind: str                    # "tensor", "op" or "module"
    label: str = ""              # tensor: its name ("" if none); op: the Function's class name; module: its path
    role: str = ""               # tensor: "parameter", "input", "intermediate" or "output"
    shape: tuple = ()
    dtype: str = ""
    data: np.ndarray = None
    grad: np.ndarray = None      # None when no gradient was computed (never a stand-in 0)
    module: str = None           # path of the innermost recorded module call that made it
    detail: str = ""             # op: its options ("dim=2"); module: its class and parameter count
    obj: object = None           # the Tensor or Function drawn, for inspection


@dataclass
class Edge:
    src: str
    dst: str
    shape: tuple                 # of the tensor carried; the gradient flowing back has this shape
    grad: bool                   # whether a gradient flows back along this edge
    note: str = ""               # contracted shape ops, or the tensor a collapsed module passes on


@dataclass
class Graph:
    nodes: list
    edges: list
    clusters: dict = field(default_factory=dict)  # module path -> (label, parent path or None)


# ---------------------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------------------

def trace(*roots, names=None, modules=None, hide_shape_ops=False, depth=None):
    """The graph behind `roots` (Tensors) as a Graph, nodes in walk order (inputs before outputs).

    names: a Module (its named_parameters() and named_buffers() label the tensors, e.g.
      "blocks.0.attn.W_query.weight") or a dict {name: Tensor}; tensors not named there show
      their `.name` if set. The recorded model's names are used too when `modules` is given.
    modules: a record_modules(...) record of the forward pass: clusters per module call.
    hide_shape_ops: True folds Reshape, Permute, Expand and basic-slice Index into the edges;
      a collection of those op names folds only those (e.g. keep Expand to show a repeat).
    depth: with `modules`, draw each module call `depth` levels below the outermost recorded
      call as one box (depth=1: a transformer's embeddings, blocks and head).
    A leaf that requires a gradient is drawn as a parameter, unless a model is given (names=
    a Module, or modules=) and it is not among the model's parameters: then it is an input.
    """
    if not roots:
        raise ValueError("trace needs at least one tensor")
    for r in roots:
        if not isinstance(r, Tensor):
            raise TypeError(f"trace draws Tensors, got {type(r).__name__}")
    by_id = _names_by_id(modules.model) if modules is not None else {}
    by_id.update(_names_by_id(names))
    models = [m for m in (getattr(modules, "model", None), names) if hasattr(m, "named_parameters")]
    params = {id(p) for m in models for _, p in m.named_parameters()} if models else None
    graph = _walk(roots, by_id, modules, params)
    if hide_shape_ops:
        graph = contract_shape_ops(graph, SHAPE_OPS if hide_shape_ops is True else hide_shape_ops)
    if depth is not None:
        if modules is None:
            raise ValueError("depth= collapses module calls, so it needs modules=record (see record_modules)")
        graph = collapse_modules(graph, modules, depth)
    return graph


def _names_by_id(names):
    """{id(tensor) or id(its data): name}; ids of the data let a mask passed as a Tensor keep its name."""
    if names is None:
        return {}
    if hasattr(names, "named_parameters"):
        pairs = list(names.named_parameters())
        pairs += list(names.named_buffers()) if hasattr(names, "named_buffers") else []
    elif isinstance(names, dict):
        pairs = list(names.items())
    else:
        raise TypeError(f"names must be a Module or a dict {{name: Tensor}}, got {type(names).__name__}")
    by_id = {}
    for name, t in pairs:
        if not isinstance(t, Tensor):
            raise TypeError(f"names[{name!r}] is a {type(t).__name__}, not a Tensor")
        by_id.setdefault(id(t), name)
        by_id.setdefault(id(t.data), name)
    return by_id


def _walk(roots, names, modules, params):
    nodes, edges, node_of = [], [], {}  # node_of: id(tensor or constant array) -> node id
    root_ids = {id(r) for r in roots}
    count = {"t": 0, "op": 0}

    def new_id(prefix):
        count[prefix] += 1
        return f"{prefix}{count[prefix] - 1}"

    def add_tensor(t):
        if id(t) in root_ids:
            role = "output"
        elif t._ctx is None:
            role = "parameter" if t.requires_grad and (params is None or id(t) in params) else "input"
        else:
            role = "intermediate"
        nid = node_of[id(t)] = new_id("t")
        nodes.append(Node(nid, "tensor", names.get(id(t)) or t.name or "", role, t.shape, str(t.dtype), t.data,
                          t.grad, modules.module_of(t) if modules else None, obj=t))
        return nid

    def add_constant(array, label, module):
        if id(array) not in node_of:
            node_of[id(array)] = new_id("t")
            if modules:
                module = modules.module_of_array(array, module)
            name = names.get(id(array)) or names.get(id(array.base)) or label  # a slice of a named mask
            nodes.append(Node(node_of[id(array)], "tensor", name, "input", array.shape, str(array.dtype), array,
                              None, module))
        return node_of[id(array)]

    for root in roots:
        for t in topological_order(root):
            if id(t) in node_of:
                continue
            ctx = t._ctx
            if ctx is _FREED:
                raise RuntimeError(FREED_MESSAGE)
            if ctx is None:
                add_tensor(t)
                continue
            for p in ctx.parents:
                if id(p) not in node_of:  # leaves that need no gradient are not in topological_order
                    add_tensor(p)
            module = modules.module_of(t) if modules else None
            consts = [(add_constant(a, label, module), a.shape) for a, label in _constants(ctx)]
            op = new_id("op")
            nodes.append(Node(op, "op", type(ctx).__name__, detail=_op_detail(ctx, t), module=module, obj=ctx))
            edges += [Edge(node_of[id(p)], op, p.shape, p.requires_grad) for p in ctx.parents]
            edges += [Edge(c, op, shape, False) for c, shape in consts]
            edges.append(Edge(op, add_tensor(t), t.shape, True))
    clusters = {}
    if modules:
        clusters = {path: (f"{path}: {cls}" if path else cls, parent) for path, (cls, parent) in modules.calls.items()}
    return Graph(nodes, edges, clusters)


def _constants(ctx):
    """(array, label) for each array an op holds that is not a graph input: masks, conditions, ids."""
    name = type(ctx).__name__
    if name in CONSTANTS:
        attr, label = CONSTANTS[name]
        return [(getattr(ctx, attr), label)]
    if name == "Index" and ctx.advanced:
        parts = ctx.index if isinstance(ctx.index, tuple) else (ctx.index,)
        return [(p, "index") for p in parts if isinstance(p, np.ndarray)]
    return []


def _op_detail(ctx, out):
    """The options that tell two ops of one kind apart: softmax's dim, the fill value, the slice."""
    name = type(ctx).__name__
    if name in ("Softmax", "LogSoftmax"):
        return f"dim={ctx.dim}"
    if name in ("Sum", "Mean", "Max", "Var") and ctx.dim is not None:
        return "dim=" + ",".join(str(d) for d in ctx.dim)
    if name == "Pow":
        return f"^{_number(ctx.exponent)}"
    if name == "Permute":
        return "dims=" + ",".join(str(int(d)) for d in np.argsort(ctx.inverse))
    if name == "MaskedFill":
        filled = out.data[np.broadcast_to(ctx.mask, out.shape)]
        return f"value={_number(filled.flat[0])}" if filled.size else ""
    if name == "Index":
        parts = ctx.index if isinstance(ctx.index, tuple) else (ctx.index,)
        return "[" + ", ".join(_index_text(p) for p in parts) + "]"
    return ""


def _index_text(p):
    if isinstance(p, slice):
        text = ("" if p.start is None else str(p.start)) + ":" + ("" if p.stop is None else str(p.stop))
        return text + ("" if p.step is None else f":{p.step}")
    if isinstance(p, np.ndarray):
        return f"index {_shape_text(p.shape)}"
    return "..." if p is Ellipsis else str(p)


def retain_grads(*roots):
    """Call retain_grad() on every intermediate tensor behind `roots`, before backward(), so the
    drawing can show their gradients too. Returns the roots."""
    for root in roots:
        for t in topological_order(root):
            if t._ctx is not None:
                t.retain_grad()
    return roots[0] if len(roots) == 1 else roots


# ---------------------------------------------------------------------------------------
# Simplifying: shape ops folded into edges, module calls collapsed into boxes
# ---------------------------------------------------------------------------------------

def _is_shape_op(node, ops):
    return node.kind == "op" and node.label in ops and not (node.label == "Index" and node.obj.advanced)


def contract_shape_ops(graph, ops=SHAPE_OPS):
    """Fold each pure shape op named in `ops` (and the tensor it makes) into the edges using that tensor.

    The input tensor stands in for the output, the edge says what was done, naming each folded
    tensor that had a name: "Reshape, Permute -> keys (1, 2, 4, 2), Permute -> (1, 2, 2, 4)".
    An output tensor is never folded away.
    """
    by_id = {n.id: n for n in graph.nodes}
    ins, out_of = {}, {}
    for e in graph.edges:
        if by_id[e.dst].kind == "op":
            ins.setdefault(e.dst, []).append(e)
        else:
            out_of[e.src] = e.dst
    alias, chain, dropped = {}, {}, set()
    for n in graph.nodes:
        if not _is_shape_op(n, ops) or by_id[out_of[n.id]].role == "output":
            continue
        src, out = ins[n.id][0].src, out_of[n.id]
        step = n.label + (f" {n.detail}" if n.detail else "")
        if by_id[out].label:
            step += f" -> {by_id[out].label} {_shape_text(by_id[out].shape)}"
        alias[out], chain[out] = alias.get(src, src), chain.get(src, []) + [step]
        dropped |= {n.id, out}
    nodes = [n for n in graph.nodes if n.id not in dropped]
    edges = []
    for e in graph.edges:
        if e.src in alias and e.dst not in dropped:  # a use of a folded tensor
            note = ", ".join(chain[e.src]) + ("" if by_id[e.src].label else f" -> {_shape_text(e.shape)}")
            edges.append(Edge(alias[e.src], e.dst, e.shape, e.grad, note))
        elif e.src not in dropped and e.dst not in dropped:
            edges.append(e)
    return Graph(nodes, edges, graph.clusters)


def collapse_modules(graph, record, depth):
    """Draw every module call `depth` levels below the outermost recorded call as one box.

    Everything such a call made (its tensors, ops, constants, and its own parameters) goes
    into the box, labelled with the module path, class and parameter count; edges leaving the
    box are labelled with the shape of the tensor they carry.
    """
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an int >= 0, got {depth!r}")
    boxes, box_of, params = {}, {}, {}
    by_id = {n.id: n for n in graph.nodes}
    nodes = []
    for n in graph.nodes:
        path = record.ancestor_at(n.module, depth) if n.module is not None else None
        if path is None:
            nodes.append(n)
            continue
        if path not in boxes:
            cls, parent = record.calls[path]
            boxes[path] = Node(f"m{len(boxes)}", "module", path or cls, module=parent, detail=cls)
            nodes.append(boxes[path])
        box_of[n.id] = boxes[path].id
        if n.role == "parameter":
            params[path] = params.get(path, 0) + int(np.prod(n.shape))
    for path, box in boxes.items():
        if params.get(path):
            box.detail += f"\n{params[path]:,} parameters"
    edges, seen = [], set()
    for e in graph.edges:
        src, dst = box_of.get(e.src, e.src), box_of.get(e.dst, e.dst)
        if src == dst:
            continue
        if src != e.src or dst != e.dst:  # touches a box: one edge per pair of ends is enough
            if (src, dst) in seen:
                continue
            seen.add((src, dst))
        note = e.note
        if src != e.src:  # leaving a box: say which tensor comes out
            out = by_id[e.src]
            what = f"{out.label} {_shape_text(out.shape)}" if out.label else _shape_text(out.shape)
            note = f"{what}, {note}" if note else what
        edges.append(Edge(src, dst, e.shape, e.grad, note))
    return Graph(nodes, edges, graph.clusters)


# ---------------------------------------------------------------------------------------
# DOT text
# ---------------------------------------------------------------------------------------

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
    lines.append(f"{_shape_text(n.shape)} {n.dtype}")
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
    label = f"grad {_shape_text(e.shape)}" + (f"\n({e.note})" if e.note not in ("", _shape_text(e.shape)) else "")
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


# ---------------------------------------------------------------------------------------
# Summaries of data and gradients
# ---------------------------------------------------------------------------------------

def _shape_text(shape):
    return "scalar" if shape == () else str(tuple(shape))


def _number(x):
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.3g}"


def _values(a):
    if a.ndim == 0:
        return _number(a.item() if a.dtype.kind != "b" else bool(a))
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
        return [f"[{_number(a.min())}, {_number(a.max())}]"]
    finite = a[np.isfinite(a)]
    mean = f" mean {_number(finite.mean())}" if finite.size else ""
    return [f"[{_number(a.min())}, {_number(a.max())}]{mean}"]


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------

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
