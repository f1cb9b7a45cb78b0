"""Which module call made which tensor: the record behind the module clusters of a drawing.

    with record_modules(model) as rec:
        loss = F.cross_entropy(model(x), y)
    render(loss, "model", modules=rec, depth=1)

It listens with nn's global forward hooks. The engine has no creation counter to snapshot,
so the after-call hook walks back instead: from the call's output through the graph, it
claims for the module every tensor not yet claimed, stops at the call's own arguments,
at leaves, and at tensors claimed by an earlier call that is not nested inside this one,
and passes through (without re-claiming) the tensors of calls nested inside it. Hooks of
nested calls finish first, so each tensor ends up with the innermost module call that made
it. A tensor that a module reaches neither through its arguments nor its own parameters
(say a non-leaf tensor kept on `self` from an earlier call) is claimed by the first call
that walks into it. Leaves that need no gradient and are made inside a call (a scale
constant, a mask) belong to that call; an array passed into a call (token ids given to an
Embedding) belongs to the caller, so the model's input stays outside the model's cluster.
"""

import numpy as np

from ..nn.module import register_module_forward_hook, register_module_forward_pre_hook
from ..engine import Tensor
from .names import record_names


def _tensors(obj, kinds=(Tensor,)):
    """The Tensors (or other `kinds`) in a call's arguments or output, nested in tuples, lists, dicts."""
    if isinstance(obj, kinds):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for x in obj for t in _tensors(x, kinds)]
    if isinstance(obj, dict):
        return [t for x in obj.values() for t in _tensors(x, kinds)]
    return []


class record_modules(record_names):
    """Context manager recording, during a forward pass of `model`, the module call behind each
    tensor, and (as record_names does) the variable each tensor was first bound to.

    The record keeps the recorded tensors alive (their ids are its keys); drop it when drawn.
    calls: {path: (class name, path of the enclosing call or None)} in the order calls began;
      the model itself has path "".
    """

    def __init__(self, model):
        if not hasattr(model, "named_modules"):
            raise TypeError(f"record_modules needs an nn.Module, got {type(model).__name__}")
        super().__init__()
        self.model = model
        self.calls = {}
        self._path = {}
        for name, m in model.named_modules():
            self._path.setdefault(id(m), name)  # a module reachable twice keeps its first name
        self._param_module = {id(p): name.rpartition(".")[0] for name, p in model.named_parameters()}
        self._made, self._arrays, self._alive, self._stack, self._handles = {}, {}, [], [], []

    def __enter__(self):
        self._handles = [register_module_forward_pre_hook(self._before), register_module_forward_hook(self._after)]
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        for handle in self._handles:
            handle.remove()
        self._handles, self._stack = [], []

    def _before(self, module, args):
        path = self._path.get(id(module))
        if path is None:  # a module outside the model: its tensors go to the call around it
            return
        parent = self._stack[-1] if self._stack else None
        self.calls.setdefault(path, (type(module).__name__, parent))
        for x in _tensors(args, (Tensor, np.ndarray)):  # outermost call first: data passed in belongs
            self._arrays.setdefault(id(x.data if isinstance(x, Tensor) else x), parent)  # where it came from
            self._alive.append(x)
        self._stack.append(path)

    def _after(self, module, args, output):
        path = self._path.get(id(module))
        if path is None:
            return
        self._stack.pop()
        seen = {id(t) for t in _tensors(args)}
        todo = list(_tensors(output))
        while todo:
            t = todo.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            owner = self._made.get(id(t))
            if t._ctx is None:
                if owner is None and not t.requires_grad:  # a constant made inside this call
                    self._claim(t, path)
                continue
            if owner is None:
                self._claim(t, path)
            elif not self._encloses(path, owner):
                continue
            todo.extend(t._ctx.parents)

    def _claim(self, t, path):
        self._made[id(t)] = path
        self._alive.append(t)

    def _encloses(self, path, inner):
        """Whether the call `inner` is `path` or nested inside it."""
        while inner is not None:
            if inner == path:
                return True
            inner = self.calls[inner][1]
        return False

    # ----- questions the drawing asks -----
    def module_of(self, t):
        """Path of the innermost call that made tensor t; a parameter goes to the nearest called
        module along its dotted name. None outside every recorded call."""
        if id(t) in self._made:
            return self._made[id(t)]
        path = self._param_module.get(id(t))
        while path is not None and path not in self.calls:
            path = path.rpartition(".")[0] if path else None
        return path

    def module_of_array(self, array, default):
        """Module of an array an op holds (a mask, ids): where it was passed in from, else `default`."""
        return self._arrays.get(id(array), default)

    def ancestor_at(self, path, depth):
        """The call enclosing `path` that sits `depth` levels below the outermost call, or None if
        `path` itself is shallower."""
        chain = [path]
        while self.calls[chain[-1]][1] is not None:
            chain.append(self.calls[chain[-1]][1])
        return chain[-1 - depth] if depth < len(chain) else None
