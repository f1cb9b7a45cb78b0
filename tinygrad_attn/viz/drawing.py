"""The two ways in: draw() for this project's pictures, make_dot() for torchviz's users.

    viz.draw(layer, x)                                            # a module called on inputs
    viz.draw(layer, x, view="backward", depth=1, rankdir="LR", size=(1920, None)).save("layer.png")
    viz.make_dot(loss, params=dict(model.named_parameters()))     # torchviz's call: a graphviz.Digraph

Both display inline in Jupyter. draw() records the call it makes: module calls become clusters
(collapsed into boxes below `depth`), tensors take the names of the variables the code binds
them to, and the inputs the names of the parameters they are passed as; the gallery draws
every diagram with it, so a picture of your own module reads like the gallery's.
"""

import inspect

import numpy as np

from ..engine import Tensor, topological_order
from .dot import dot_body, to_dot
from .modules import _tensors, record_modules
from .names import record_names
from .rendering import Drawing
from .tracing import retain_grads, trace

RANDOM_WEIGHTS = ("random weights r: loss = sum(out * r)\n(.sum() alone would send every output the same\n"
                  "gradient, 1, and hide a wrong one)")


def draw(what, *inputs, view="forward", depth=None, rankdir="TB", size=None, title=None, names=None,
         hide_shape_ops=False, compact=True, data="summary", show_saved=False, legend=True):
    """A Drawing (inline in Jupyter; .save("name.svg" or "name.png")) of a Module or function called on
    `inputs`, or of a Tensor (or list of Tensors) already computed.

    view="backward": the output of the call is multiplied by fixed random weights and summed
      into a loss, backward() runs with every gradient kept, and each edge carries the shape of
      its gradient (the parameters' .grad are left as they were). A Tensor is drawn as it is:
      call retain_grads(loss) and loss.backward(retain_graph=True) first to see gradients.
    depth: draw each module call this many levels below the outermost as one box.
    hide_shape_ops, compact: as trace(); by default each op is drawn with the tensor it makes, and
      each run of views (a head split) as one small node, which halves the height of a layer.
    names: for Tensors, what trace() takes (a dict, a Module, a record_names/record_modules record).
    rankdir ("TB", "LR"), title, data, show_saved, legend: as to_dot; size: (width, height) px, as Drawing.
    """
    called = not isinstance(what, (Tensor, list, tuple))
    if not called:
        if inputs:
            raise TypeError("inputs are for a module or function to call; Tensors are drawn as they are")
        roots = list(what) if isinstance(what, (list, tuple)) else [what]
        modules = names if hasattr(names, "calls") else None
        names = None if modules is not None else names
    elif callable(what):
        if names is not None:
            raise TypeError("names= labels Tensors drawn as they are; a call names its tensors after its variables")
        roots, record, inputs = _call(what, inputs)
        modules, names = (record, None) if hasattr(record, "calls") else (None, record)
        title = _name(what) if title is None else title
    else:
        raise TypeError(f"draw takes a Module, a function or Tensors, got {type(what).__name__}")
    before = []
    if view == "backward" and called:
        before = [(t, t.grad) for root in roots for t in topological_order(root) if t._ctx is None]
        roots = [_backward(roots)]
    graph = trace(*roots, names=names, modules=modules, hide_shape_ops=hide_shape_ops, depth=depth, compact=compact,
                  inputs=inputs)
    for t, grad in before:  # the drawing has the gradients now: the model's .grad stay as they were
        t.grad = grad
    return Drawing(to_dot(graph, view=view, title=title, legend=legend, rankdir=rankdir, data=data,
                          show_saved=show_saved), size, graph)


def _call(fn, inputs):
    """Call fn (a Module or function) on the inputs while recording; (its output Tensors, the record, the inputs).

    Inputs become Tensors; a float one that needs no gradient is replaced by one that does (the
    same data), so that the engine records every op on it (a LayerNorm of the inputs) too. Each
    is named after the parameter it is passed as, unless it has a name.
    """
    is_module = hasattr(fn, "named_modules")
    try:
        params = list(inspect.signature(fn.forward if is_module else fn).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        params = []
    record = record_modules(fn) if is_module else record_names()
    args = []
    for i, x in enumerate(inputs):
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        if x.dtype.kind == "f" and not x.requires_grad:
            x = Tensor(x.data, requires_grad=True)
        record.variables[id(x)] = params[i] if i < len(params) else f"input {i}"
        args.append(x)
    with record:
        out = fn(*args)
    roots = [t for t in _tensors(out) if t.requires_grad] or _tensors(out)
    if not roots:
        raise TypeError(f"{_name(fn)} returned no Tensor to draw")
    return roots, record, args


def _name(fn):
    """A module's class name, a function's name."""
    return type(fn).__name__ if hasattr(fn, "named_modules") else getattr(fn, "__name__", type(fn).__name__)


def _backward(outputs):
    """loss = sum over the outputs of sum(out * r), r fixed random weights; backward() keeps every gradient."""
    rng = np.random.default_rng(0)
    loss = None
    for out in outputs:
        r = Tensor(rng.standard_normal(out.shape))
        r.name = RANDOM_WEIGHTS
        term = (out * r).sum()
        loss = term if loss is None else loss + term
    loss.name = "loss"
    retain_grads(loss)
    loss.backward(retain_graph=True)
    return loss


def make_dot(output, params=None, show_attrs=False, show_saved=False):
    """torchviz's make_dot: the backward graph behind `output` (a Tensor or a tuple of them) as a
    graphviz.Digraph, which displays inline in Jupyter and has .render("name", format="png").

    params: {name: parameter}, as dict(model.named_parameters()), labels the leaves. As in
    torchviz, every op is drawn (views included) as its backward (MulBackward), tensors as boxes
    with their shapes; show_attrs adds each op's options (dim=-1), show_saved the arrays it
    saved for backward with their sizes. Edges carry the gradients' shapes.
    """
    try:
        import graphviz
    except ImportError:
        raise ImportError("make_dot needs the graphviz Python package: pip install graphviz") from None
    roots = tuple(output) if isinstance(output, (tuple, list)) else (output,)
    name, body = dot_body(roots, view="backward", legend=False, data=None, show_attrs=show_attrs,
                          show_saved=show_saved, names=params)
    return graphviz.Digraph(name=name, body=[f"  {line}\n" for line in body])
