"""Simplifying a traced Graph so that a whole layer or model reads on one page.

contract_shape_ops folds the ops that only move numbers around (views) into the edges;
collapse_modules draws each module call below a depth as one box.
"""

import numpy as np

from .graph import Edge, Graph, Node, shape_text


def _is_view(node, ops):
    return node.kind == "op" and node.obj.is_view and (ops is None or type(node.obj) in ops)


def contract_shape_ops(graph, ops=None):
    """Fold each op that is a view (Function.is_view; only those of the classes in `ops`, if given),
    and the tensor it makes, into the edges using that tensor.

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
        if not _is_view(n, ops) or by_id[out_of[n.id]].role == "output":
            continue
        src, out = ins[n.id][0].src, out_of[n.id]
        step = n.label + (f" {n.detail}" if n.detail else "")
        if by_id[out].label:
            step += f" -> {by_id[out].label} {shape_text(by_id[out].shape)}"
        alias[out], chain[out] = alias.get(src, src), chain.get(src, []) + [step]
        dropped |= {n.id, out}
    nodes = [n for n in graph.nodes if n.id not in dropped]
    edges = []
    for e in graph.edges:
        if e.src in alias and e.dst not in dropped:  # a use of a folded tensor
            note = ", ".join(chain[e.src]) + ("" if by_id[e.src].label else f" -> {shape_text(e.shape)}")
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
            what = f"{out.label} {shape_text(out.shape)}" if out.label else shape_text(out.shape)
            note = f"{what}, {note}" if note else what
        edges.append(Edge(src, dst, e.shape, e.grad, note))
    return Graph(nodes, edges, graph.clusters)
