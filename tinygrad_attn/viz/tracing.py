"""Tracing: the graph behind some tensors as plain data, in a deterministic order.

trace(*roots) walks the graph the engine recorded into a `Graph` of nodes and edges (ids t0,
t1, ... for tensors and op0, op1, ... for ops, given in walk order, inputs before outputs), so
that the DOT text built from it (dot.py) is the same on every run. It knows no op by name:
an op is drawn as its Function's class name and the options it was called with (`options`,
e.g. dim=-1); an array among those options (the mask of a masked_fill, the condition of a
where, the targets of a cross-entropy, an index array) is drawn as a constant input box;
ops that set `is_view` can be folded into the edges (simplify.py). The arrays a Function keeps
on itself for backward (the numpy arrays among its attributes that are not options) are its
`saved` arrays: the activation memory the graph holds until backward() frees it.

Gradients appear only where they were computed, never as a made-up 0. backward() gives
.grad to leaves; an intermediate tensor keeps its gradient only if t.retain_grad() was
called before backward(), or call `retain_grads(loss)` to mark them all. backward() also
frees the graph: to draw after it, call backward(retain_graph=True); drawing a freed graph
raises an error saying so.
"""

import numpy as np

from ..tensor import Tensor, _FREED, topological_order
from .graph import Edge, Graph, Node, number_text, shape_text
from .simplify import collapse_modules, contract_shape_ops, merge_outputs

FREED_MESSAGE = ("cannot draw this graph: backward() has freed it. Call backward(retain_graph=True) to draw after "
                 "backward; to see the gradients of intermediate tensors as well, call retain_grad() on them (or "
                 "tinygrad_attn.viz.retain_grads(loss) on the output) before backward().")


def trace(*roots, names=None, modules=None, hide_shape_ops=False, depth=None, compact=False, inputs=()):
    """The graph behind `roots` (Tensors) as a Graph, nodes in walk order (inputs before outputs).

    names: a Module (its named_parameters() and named_buffers() label the tensors, e.g.
      "blocks.0.attn.W_query.weight"), a dict {name: Tensor}, or a record_names() record (the
      variable each tensor was first bound to in the code that made it). A tensor is labelled
      by names= if it is there, else by its own `.name`, else by the model's names, else by
      the recorded variable name.
    modules: a record_modules(...) record of the forward pass: clusters per module call, and
      the names of the model and of the variables it recorded.
    hide_shape_ops: True folds the ops that are views (Function.is_view: reshape, permute,
      expand, basic slicing) into the edges; a collection of Function classes folds only those.
    depth: with `modules`, draw each module call `depth` levels below the outermost recorded
      call as one box (depth=1: a transformer's embeddings, blocks and head).
    compact: draw each op and the intermediate tensor it makes as one node (half the height).
    A leaf that requires a gradient is drawn as a parameter, unless a model is given (names=
    a Module, or modules=) and it is not among the model's parameters, or it is one of
    `inputs` (tensors given to the code drawn): then it is an input.
    """
    if not roots:
        raise ValueError("trace needs at least one tensor")
    for r in roots:
        if not isinstance(r, Tensor):
            raise TypeError(f"trace draws Tensors, got {type(r).__name__}")
    recorded = [r for r in (modules, names) if hasattr(r, "variables")]  # record_names() records
    fallback = {k: v for r in recorded for k, v in r.variables.items()}
    fallback.update(_names_by_id(getattr(modules, "model", None)))
    given = {} if names in recorded else _names_by_id(names)
    models = [m for m in (getattr(modules, "model", None), names) if hasattr(m, "named_parameters")]
    params = {id(p) for m in models for _, p in m.named_parameters()} if models else None
    graph = _walk(roots, given, fallback, modules, params, {id(t) for t in inputs})
    if hide_shape_ops:
        graph = contract_shape_ops(graph, None if hide_shape_ops is True else tuple(hide_shape_ops))
    if depth is not None:
        if modules is None:
            raise ValueError("depth= collapses module calls, so it needs a module (when drawing a Tensor: "
                             "modules=record_modules(...))")
        graph = collapse_modules(graph, modules, depth)
    return merge_outputs(graph) if compact else graph


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
        raise TypeError(f"names must be a Module, a dict {{name: Tensor}} or a record_names() record, "
                        f"got {type(names).__name__}")
    by_id = {}
    for name, t in pairs:
        if not isinstance(t, Tensor):
            raise TypeError(f"names[{name!r}] is a {type(t).__name__}, not a Tensor")
        by_id.setdefault(id(t), name)
        by_id.setdefault(id(t.data), name)
    return by_id


def _walk(roots, names, fallback, modules, params, inputs):
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
            role = "parameter" if t.requires_grad and (params is None or id(t) in params) and id(t) not in inputs \
                else "input"
        else:
            role = "intermediate"
        nid = node_of[id(t)] = new_id("t")
        label = names.get(id(t)) or t.name or fallback.get(id(t)) or ""
        nodes.append(Node(nid, "tensor", label, role, t.shape, str(t.dtype), t.data,
                          None if t.grad is None else t.grad.data, modules.module_of(t) if modules else None, obj=t))
        return nid

    def add_constant(array, label, module):
        if id(array) not in node_of:
            node_of[id(array)] = new_id("t")
            if modules:
                module = modules.module_of_array(array, module)
            named = {**fallback, **names}
            name = named.get(id(array)) or named.get(id(array.base)) or label  # a slice of a named mask
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
            consts = [(add_constant(a, label, module), a.shape) for label, a in _constants(ctx.options)]
            op = new_id("op")
            nodes.append(Node(op, "op", type(ctx).__name__, detail=_detail(ctx.options), module=module, obj=ctx,
                              saved=_saved(ctx, t)))
            edges += [Edge(node_of[id(p)], op, p.shape, p.requires_grad) for p in ctx.parents]
            edges += [Edge(c, op, shape, False) for c, shape in consts]
            edges.append(Edge(op, add_tensor(t), t.shape, True))
    clusters = {}
    if modules:
        clusters = {path: (f"{path}: {cls}" if path else cls, parent) for path, (cls, parent) in modules.calls.items()}
    return Graph(nodes, edges, clusters)


def _constants(options):
    """(label, array) for each array among an op's options (also inside an index tuple): inputs outside the graph."""
    out = []
    for key, value in options.items():
        parts = value if isinstance(value, tuple) else (value,)
        out += [(key, a) for a in parts if isinstance(a, np.ndarray) and a.ndim > 0]
    return out


def _saved(ctx, made):
    """(attribute, array, what it is: "input 0", "output" or "" for a new array) for each array ctx keeps
    for backward. Its inputs and output are held by the graph anyway; a new array is memory of its own."""
    options = [a for _, a in _constants(ctx.options)]
    out = []
    for key, value in vars(ctx).items():
        if isinstance(value, np.ndarray) and not any(value is a for a in options):
            same = [f"input {i}" for i, p in enumerate(ctx.parents) if value is p.data]
            out.append((key, value, same[0] if same else "output" if value is made.data else ""))
    return out


def _detail(options):
    """The options that tell two ops of one kind apart, one per line: "dim=3", "value=-inf", "[:, 0:2]".

    Arrays are drawn as boxes of their own, and the output's box shows its shape, so neither is
    repeated here; nor are None, False and objects without a short text.
    """
    lines = []
    for key, value in options.items():
        if key == "shape" or isinstance(value, np.ndarray):
            continue
        if isinstance(value, tuple) and any(isinstance(p, (slice, np.ndarray, type(Ellipsis), type(None)))
                                            for p in value):
            text = "[" + ", ".join(_index_text(p) for p in value) + "]"
        elif isinstance(value, slice):
            text = "[" + _index_text(value) + "]"
        elif isinstance(value, tuple):
            text = ",".join(number_text(v) for v in value)
        elif value is None or value is False:
            continue
        elif isinstance(value, (bool, int, float, str, np.generic, np.dtype)):
            text = number_text(value) if isinstance(value, (int, float, np.number)) else str(value)
        else:
            continue
        lines.append(text if text.startswith("[") else f"{key}={text}")  # an index speaks for itself
    return "\n".join(lines)


def _index_text(p):
    if isinstance(p, slice):
        text = ("" if p.start is None else str(p.start)) + ":" + ("" if p.stop is None else str(p.stop))
        return text + ("" if p.step is None else f":{p.step}")
    if isinstance(p, np.ndarray):
        return f"index {shape_text(p.shape)}"
    return "..." if p is Ellipsis else "None" if p is None else str(p)


def retain_grads(*roots):
    """Call retain_grad() on every intermediate tensor behind `roots`, before backward(), so the
    drawing can show their gradients too. Returns the roots."""
    for root in roots:
        for t in topological_order(root):
            if t._ctx is not None:
                t.retain_grad()
    return roots[0] if len(roots) == 1 else roots
