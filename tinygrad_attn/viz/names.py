"""Names for the tensors of a drawing, taken from the code that made them.

    with record_names() as rec:
        context = attention.simple_self_attention(x)[1]
    render(context, "attn", names=rec)      # boxes labelled attn_scores, attn_weights, ...

While recording, a tracer (sys.settrace) watches the Python functions that run, outside the
engine and the drawing code, and names each new tensor after the local variable it is first
bound to: `attn_scores = queries @ keys.transpose(2, 3)` labels that product "attn_scores".
So a layer need not name its tensors for a drawing, and a drawing of your own module shows
your own variable names. Function parameters, and the names in GENERIC (x, t, out, ...), name
nothing: the first is a tensor made elsewhere, the second says nothing a box's shape does not.
Tracing slows Python down several times over, which does not matter for the small graphs
one draws. While recording, the fused ops run as the compositions of basic ops they replace
(runtime.fused_ops(False)), so that a drawing shows an attention layer's steps, not one box.
"""

import sys
from pathlib import Path

from ..engine import Tensor
from ..runtime import fused_ops

PACKAGE = Path(__file__).resolve().parent.parent
UNTRACED = {PACKAGE / "engine.py", PACKAGE / "ops.py", PACKAGE / "shapes.py", Path(__file__).resolve().parent}
GENERIC = frozenset({"x", "t", "y", "out", "output", "result", "tensor", "self"})


class record_names:
    """Context manager recording, for every tensor made inside it, the variable it was first bound to.

    variables: {id(tensor): name}; the record keeps those tensors alive, so drop it when drawn.
    """

    def __init__(self):
        self.variables, self._alive, self._traced = {}, [], {}

    def __enter__(self):
        self._previous, self._unfused = sys.gettrace(), fused_ops(False)
        self._unfused.__enter__()
        sys.settrace(self._call)
        return self

    def __exit__(self, *exc):
        sys.settrace(self._previous)
        self._unfused.__exit__(*exc)

    def _call(self, frame, event, arg):
        """The global trace function: returns the local one for frames worth watching."""
        code = frame.f_code
        if code not in self._traced:
            self._traced[code] = self._worth_watching(code.co_filename)
        if not self._traced[code]:
            return None
        params = set(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
        watched = self.variables

        def local(frame, event, arg):
            for name, value in frame.f_locals.items():
                if isinstance(value, Tensor) and id(value) not in watched and name not in params \
                        and name not in GENERIC:
                    watched[id(value)] = name
                    self._alive.append(value)  # an id is only unique while its tensor lives
            return local

        return local

    def tensors(self, name):
        """The tensors that were first bound to the variable `name`, in the order they were bound:
        the way to measure what a layer computed inside (rec.tensors("attn_scores") before and after the mask)."""
        found = {id(t): t for t in self._alive if isinstance(t, Tensor) and self.variables.get(id(t)) == name}
        return list(found.values())

    @staticmethod
    def _worth_watching(filename):
        """Code of this package outside the engine and the drawing code, and code outside every installed package."""
        path = Path(filename).resolve()
        if PACKAGE in path.parents:
            return not any(path == p or p in path.parents for p in UNTRACED)
        return not filename.startswith("<") and not any(
            part in ("site-packages", "dist-packages") for part in path.parts) and \
            not str(path).startswith(sys.base_prefix)
