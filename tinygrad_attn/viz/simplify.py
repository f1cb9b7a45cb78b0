"""Simplifying a traced Graph so that a whole layer or model reads on one page.

contract_shape_ops folds the ops that only move numbers around (views) into the edges;
collapse_modules draws each module call below a depth as one box; merge_outputs draws each
op together with the tensor it makes, which halves the height of a long chain.
"""

from dataclasses import replace

import numpy as np

from .graph import Edge, Graph, Node, shape_text


def _is_view(node, ops):
    return node.kind == "op" and node.obj.is_view and (ops is None or type(node.obj) in ops)


def view_step(op, made):
    """One line for a view and what it made: "Permute dims=0,2,1,3 → keys (1, 2, 4, 2)"."""
    options = " " + op.detail.replace("\n", " ") if op.detail else ""
    return f"{op.label}{options} → " + _tensor_text(made)


def contract_shape_ops(graph, ops=None):
    """Fold each op that is a view (Function.is_view; only those of the classes in `ops`, if given),
    and the tensor it makes, into the edges using that tensor.

    The input tensor stands in for the output, and the edge says what was done, one line per
    step with the shape it made (and the name, if the folded tensor had one), so a head split
    reads "Reshape → (1, 4, 2, 2)" over "Permute dims=0,2,1,3 → keys (1, 2, 4, 2)". An output
    tensor is never folded away.
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
        alias[out], chain[out] = alias.get(src, src), chain.get(src, []) + [view_step(n, by_id[out])]
        dropped |= {n.id, out}
    nodes = [n for n in graph.nodes if n.id not in dropped]
    edges = []
    for e in graph.edges:
        if e.src in alias and e.dst not in dropped:  # a use of a folded tensor
            note = "\n".join(chain[e.src])
            edges.append(Edge(alias[e.src], e.dst, e.shape, e.grad, note))
        elif e.src not in dropped and e.dst not in dropped:
            edges.append(e)
    return Graph(nodes, edges, graph.clusters)


def collapse_modules(graph, record, depth):
    """Draw every module call `depth` levels below the outermost recorded call as one box.

    Everything such a call made (its tensors, ops, constants, and its own parameters) goes
    into the box (with the arrays its ops saved for backward), labelled with the module path,
    class and parameter count, and with the name
    and shape of the tensor it passes on ("→ queries (1, 4, 8)"), or, if it passes on several,
    each edge leaving it with its own. An output tensor stays outside the box, so that the
    picture still ends in what was drawn.
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
        if n.role == "output":  # outside the box, in the call around it
            nodes.append(replace(n, module=record.calls[path][1]))
            continue
        if path not in boxes:
            cls, parent = record.calls[path]
            boxes[path] = Node(f"m{len(boxes)}", "module", path or cls, module=parent, detail=cls)
            nodes.append(boxes[path])
        box_of[n.id] = boxes[path].id
        boxes[path].saved += n.saved  # what the call keeps for backward, all of it
        if n.role == "parameter":
            params[path] = params.get(path, 0) + int(np.prod(n.shape))
    leaving = {}  # box -> the tensors it passes on
    for e in graph.edges:
        if e.src in box_of and box_of.get(e.dst) != box_of[e.src] and by_id[e.src].kind != "op":
            leaving.setdefault(box_of[e.src], {})[e.src] = by_id[e.src]
    for path, box in boxes.items():
        if params.get(path):
            box.detail += f"\n{params[path]:,} parameters"
        if len(leaving.get(box.id, {})) == 1:
            box.detail += "\n→ " + _tensor_text(*leaving[box.id].values())
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
        if len(leaving.get(src, {})) > 1:  # leaving a box that passes on several tensors: say which
            note = _tensor_text(by_id[e.src]) + (f"\n{note}" if note else "")
        edges.append(Edge(src, dst, e.shape, e.grad, note))
    return Graph(nodes, edges, graph.clusters)


def _tensor_text(n):
    return f"{n.label} {shape_text(n.shape)}" if n.label else shape_text(n.shape)


def merge_outputs(graph):
    """Draw each op and the intermediate tensor it makes as one node (Node.makes): a chain of n ops
    takes n ranks instead of 2n. Leaves and outputs stay boxes of their own. A run of views, each
    the only use of the one before (reshape, then permute: a head split), becomes one small
    node of kind "views" listing the steps (view_step) and making the last tensor.
    """
    by_id = {n.id: n for n in graph.nodes}
    makes = {e.src: e.dst for e in graph.edges if by_id[e.src].kind == "op" and by_id[e.dst].role == "intermediate"}
    into = {t: op for op, t in makes.items()}
    edges = [replace(e, src=into.get(e.src, e.src)) for e in graph.edges if e.dst not in into]
    uses, first_input = {}, {}
    for e in edges:
        uses[e.src] = uses.get(e.src, 0) + 1
        first_input.setdefault(e.dst, e.src)
    head, steps = {}, {}  # view op -> the first op of its run; first op -> its steps
    for n in graph.nodes:
        if n.kind == "op" and n.obj.is_view and n.id in makes:
            src = first_input[n.id]
            head[n.id] = head[src] if src in head and uses[src] == 1 else n.id
            steps.setdefault(head[n.id], []).append(view_step(n, by_id[makes[n.id]]))
    last = {head[v]: v for v in head}  # each run's last op, whose tensor the run makes
    nodes = []
    for n in graph.nodes:
        if n.id in into or (n.id in head and head[n.id] != n.id):
            continue
        if n.id in steps:
            n = replace(n, kind="views", label="", detail="\n".join(steps[n.id]), makes=by_id[makes[last[n.id]]])
        elif n.id in makes:
            n = replace(n, makes=by_id[makes[n.id]])
        nodes.append(n)
    edges = [replace(e, src=head.get(e.src, e.src)) for e in edges if head.get(e.dst, e.dst) != head.get(e.src)]
    return Graph(nodes, edges, graph.clusters)
