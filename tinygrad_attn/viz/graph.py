"""The data a drawing is made of: nodes (tensors, ops, collapsed module calls), edges, module clusters.

tracing.py builds a Graph from the engine's graph, simplify.py rewrites one into a smaller
one, dot.py turns one into DOT text. All three are plain data, so every step is testable
without graphviz.
"""

from dataclasses import dataclass, field

import numpy as np


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
    saved: list = field(default_factory=list)  # op: (name, array, "input 0"/"output"/""), kept for backward
    makes: "Node" = None         # op, in a compact drawing: the intermediate tensor it makes, drawn inside it


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


def shape_text(shape):
    return "scalar" if shape == () else str(tuple(shape))


def number_text(x):
    """A number as the drawings print it: ints and bools exactly, floats to 3 significant digits."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.3g}"
