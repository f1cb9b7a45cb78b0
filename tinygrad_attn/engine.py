"""The Tensor and the reverse-mode autograd engine.

A Tensor wraps a numpy array. Every differentiable op is a `Function` (see ops.py) whose
`forward` computes on numpy arrays and whose `backward` returns one gradient per input.
The engine here does the rest, in one place each:
  * it records the graph: an output Tensor points to the Function that made it (`_ctx`),
    and the Function holds its inputs in a tuple (`parents`), so the order is deterministic;
  * `backward()` walks that graph iteratively (no recursion limit) in reverse topological
    order, accumulates the gradients of tensors used more than once, and undoes numpy
    broadcasting by summing (`unbroadcast`), so no op has to.
The engine knows nothing of layers, training or drawing.
"""

import contextlib
import math

import numpy as np

float32, float64, int64, bool_ = np.dtype("float32"), np.dtype("float64"), np.dtype("int64"), np.dtype("bool")

# ---------------------------------------------------------------------------------------
# Global state: whether graphs are recorded, and the one random generator.
# ---------------------------------------------------------------------------------------

_grad_enabled = True
_rng = np.random.default_rng(0)


def manual_seed(seed):
    """Seed every random draw in tinygrad_attn (randn, rand, dropout, init), like torch.manual_seed."""
    global _rng
    _rng = np.random.default_rng(seed)


def default_rng():
    """The generator that randn, rand, dropout and parameter init draw from."""
    return _rng


class no_grad(contextlib.ContextDecorator):
    """Inside it no graph is recorded: outputs have requires_grad=False. Context manager or decorator."""

    def __init__(self):
        self.prev = []  # a stack: a decorated function may call itself, re-entering this same object

    def __enter__(self):
        global _grad_enabled
        self.prev.append(_grad_enabled)
        _grad_enabled = False

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev.pop()


def is_grad_enabled():
    return _grad_enabled


# ---------------------------------------------------------------------------------------
# Function: the base of every differentiable op.
# ---------------------------------------------------------------------------------------

class Function:
    """One node of the graph. Subclasses define

        forward(self, *arrays, **options) -> array     (save what backward needs on self)
        backward(self, grad) -> one gradient per input  (None where no gradient is needed)

    Gradients may have the broadcast shape of the output; the engine sums them back to each
    input's shape (and casts them to its dtype). `self.needs_input_grad[i]` says whether input i
    wants a gradient at all; an op checks it where computing that gradient costs an array pass.
    `self.options` keeps the keyword options of forward (dim=, mask=, ...), and an op whose
    output is a view of its input, moving no number, sets `is_view` (the drawing can fold it).
    """

    is_view = False

    def __init__(self, *parents, **options):
        self.parents = parents
        self.options = options  # what forward was called with besides the inputs: the drawing shows them
        self.needs_input_grad = tuple([p.requires_grad for p in parents])  # (a list first: 0.1 us faster)

    @classmethod
    def apply(cls, *parents, **options):
        ctx = cls(*parents, **options)
        data = np.asarray(ctx.forward(*[p.data for p in parents], **options))  # numpy gives 0-d results as scalars
        if _grad_enabled and any(ctx.needs_input_grad) and data.dtype.kind == "f":  # x.long() leaves the graph
            return Tensor._make(data, True, ctx)
        return Tensor._make(data, False, None)

    def forward(self, *arrays, **options):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, grad):
        raise NotImplementedError(f"{type(self).__name__} has no backward")


class _Freed(Function):
    """Stands where a Function was, after backward() freed the graph (retain_graph=False)."""

    def __init__(self):
        self.parents, self.options, self.needs_input_grad = (), {}, ()


_FREED = _Freed()


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the adjoint of numpy broadcasting (the one place it is undone)."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    if grad.shape != shape:
        raise RuntimeError(f"gradient of shape {grad.shape} cannot be reduced to tensor shape {shape}")
    return grad


def topological_order(root):
    """Tensors that need a gradient, each after all of its inputs; iterative, deterministic."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._ctx is not None:
            for p in reversed(t._ctx.parents):  # reversed: the first input is walked first
                if p.requires_grad and id(p) not in visited:
                    stack.append((p, False))
    return order


# ---------------------------------------------------------------------------------------
# Tensor
# ---------------------------------------------------------------------------------------

def _as_array(data, dtype):
    """A copy of user data (as torch.tensor copies); floats become float32 unless a dtype is asked for."""
    if isinstance(data, Tensor):
        data, dtype = data.data, data.dtype if dtype is None else dtype
    arr = np.asarray(data)
    return np.array(arr, dtype=dtypes.default_dtype(arr) if dtype is None else dtype)


class Tensor:
    """An n-dimensional array that records the ops applied to it, for reverse-mode autograd.

    Tensor(data, requires_grad=False, dtype=None): floats become float32 unless dtype says
    otherwise (float64 for gradient checks), integers int64, booleans bool. Only floating
    tensors can require a gradient. Elementwise ops promote dtypes as PyTorch does (dtypes.py).
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_retains_grad", "name", "__weakref__")
    __array_priority__ = 1000  # make `ndarray op Tensor` call our reflected op

    def __init__(self, data, requires_grad=False, dtype=None):
        """A Tensor holding a copy of `data` (a number, nested list, numpy array or Tensor).

        dtype: the numpy dtype to store; by default a float array becomes float32 (PyTorch's
        default dtype), an integer one int64, a bool one bool, and a Tensor keeps its dtype.
        requires_grad=True makes it a leaf whose .grad backward() fills (floating dtypes only).
        To share an array's memory instead of copying it, use tinygrad_attn.from_numpy.
        """
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad, self._ctx, self._retains_grad, self.name = None, None, False, None

    @classmethod
    def _make(cls, data, requires_grad, ctx):
        """Fast constructor for op outputs: no conversion, no checks."""
        t = object.__new__(cls)
        t.data, t.requires_grad, t._ctx = data, requires_grad, ctx
        t.grad, t._retains_grad, t.name = None, False, None
        return t

    # ----- plain attributes -----
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    is_leaf = property(lambda self: self._ctx is None, doc="True if no recorded op made this tensor")
    grad_fn = property(lambda self: self._ctx, doc="The Function that made this tensor, or None")

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """The data as a numpy array (shared, not copied; detach first to be explicit)."""
        return self.data

    def __array__(self, dtype=None, copy=None):
        """np.asarray(t): the data, so numpy functions (and np.testing) take Tensors."""
        arr = self.data if dtype is None else self.data.astype(dtype)
        return arr.copy() if copy else arr

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def tolist(self):
        return self.data.tolist()

    def __format__(self, spec):  # f"{loss:.4f}" formats a 0-d tensor's number, as in PyTorch
        return format(self.item() if self.ndim == 0 else str(self), spec)

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor._make(self.data, False, None)

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self):
        """Keep .grad on this non-leaf tensor after backward(), as in PyTorch."""
        self._retains_grad = True
        return self

    def __repr__(self):
        body = np.array2string(self.data, precision=4, separator=", ", prefix="tensor(")
        extra = "" if self.dtype in (float32, int64, bool_) else f", dtype={self.dtype}"
        if self._ctx is not None and self.requires_grad:
            extra += f", grad_fn=<{type(self._ctx).__name__}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data)

    __hash__ = object.__hash__  # __eq__ is elementwise, as in PyTorch; identity stays the hash

    # ----- autograd -----
    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into the .grad of every leaf that requires a gradient.

        Like PyTorch: gradients *add* into .grad (call zero_grad between steps); the graph is
        freed afterwards unless retain_graph=True, and a second backward() through a freed
        graph is an error; non-leaf tensors keep .grad only after retain_grad().
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no graph was recorded)")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output, got shape {self.shape}; "
                                   "pass gradient= of the same shape")
            gradient = np.ones_like(self.data)
        else:
            gradient = _as_array(gradient, self.dtype)
            if gradient.shape != self.shape:
                raise ValueError(f"gradient of shape {gradient.shape} does not match tensor shape {self.shape}")
        grads = {id(self): gradient}
        order = topological_order(self)
        while order:
            # popped, not iterated over: once the walk is past a tensor and every op that used it, nothing
            # holds it any more and its array is freed, so memory falls as backward runs, as in PyTorch
            t = order.pop()
            g = grads.pop(id(t), None)
            if g is None:
                continue
            ctx = t._ctx
            if ctx is None or t._retains_grad:  # .grad is a Tensor without a graph, as in PyTorch
                if t.grad is None:
                    t.grad = Tensor._make(np.array(g, t.dtype), False, None)  # a copy, and an array if g is 0-d
                else:
                    t.grad.data += g
            if ctx is None:
                continue
            if ctx is _FREED:
                raise RuntimeError("backward() through a graph that was already freed: the first backward() "
                                   "freed it; pass retain_graph=True to it to backward twice")
            input_grads = ctx.backward(g)
            if not retain_graph:
                t._ctx = _FREED
            for p, pg in zip(ctx.parents, input_grads):
                if pg is None or not p.requires_grad:
                    continue
                pg = unbroadcast(pg, p.data.shape).astype(p.dtype, copy=False)  # a gradient has its tensor's dtype
                key = id(p)
                grads[key] = pg if key not in grads else grads[key] + pg

    def zero_grad(self):
        self.grad = None

    def zero_(self):
        """Fill with zeros in place (x.grad.zero_(), as in PyTorch); not recorded in the graph."""
        self.data[...] = 0
        return self

    # ----- arithmetic (broadcasting like numpy, dtypes promoted like PyTorch) -----
    @staticmethod
    def _binary(op, a, b, floating=False):
        """Apply an elementwise binary op to operands of one dtype (result_type's; at least float32 if
        `floating`, so that int / int is a true division), naming both shapes if they do not broadcast."""
        a, b = dtypes.promote(a, b)
        if floating and a.dtype.kind != "f":
            a, b = a.to(float32), b.to(float32)
        if a.shape != b.shape:
            shapes.broadcast_shape(a.shape, b.shape, op.__name__.lower())
        return op.apply(a, b)

    @staticmethod
    def _matmul(a, b):
        if all(isinstance(x, Tensor) for x in (a, b)) and (a.dtype.kind == "f") != (b.dtype.kind == "f"):
            raise TypeError(f"matmul needs both operands floating or neither, got {a.dtype} and {b.dtype}")
        a, b = dtypes.promote(a, b)  # as PyTorch, but for float32 @ float64, which PyTorch refuses
        shapes.check_matmul(a, b)
        return ops.MatMul.apply(a, b)

    def _floating(self):
        """This tensor, as float32 if it is integer or bool: int.exp() is float32, as in PyTorch."""
        return self if self.dtype.kind == "f" else self.to(float32)

    def __add__(self, other): return self._binary(ops.Add, self, other)
    def __radd__(self, other): return self._binary(ops.Add, other, self)
    def __sub__(self, other): return self._binary(ops.Sub, self, other)
    def __rsub__(self, other): return self._binary(ops.Sub, other, self)
    def __mul__(self, other): return self._binary(ops.Mul, self, other)
    def __rmul__(self, other): return self._binary(ops.Mul, other, self)
    def __truediv__(self, other): return self._binary(ops.Div, self, other, floating=True)
    def __rtruediv__(self, other): return self._binary(ops.Div, other, self, floating=True)
    def __matmul__(self, other): return self._matmul(self, other)
    def __rmatmul__(self, other): return self._matmul(other, self)
    def __neg__(self): return ops.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not np.isscalar(exponent):
            raise TypeError(f"pow supports a scalar exponent only, got {type(exponent).__name__}")
        if isinstance(exponent, np.generic):  # a numpy scalar would promote float32 to float64; a Python one does not
            exponent = exponent.item()
        if self.dtype.kind != "f" and isinstance(exponent, int) and exponent < 0:  # numpy checks only if non-empty
            raise ValueError(f"integer tensors to negative integer powers ({exponent}) are not allowed, as in PyTorch")
        x = self._floating() if isinstance(exponent, float) else self  # int ** 0.5 is float32, int ** 2 an int
        return ops.Pow.apply(x, exponent=exponent)

    add, sub, mul, div, matmul, pow = __add__, __sub__, __mul__, __truediv__, __matmul__, __pow__

    # comparisons: boolean tensors, no gradient
    def _compare(self, other, fn):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._make(np.asarray(fn(self.data, other)), False, None)  # numpy gives 0-d results as scalars

    def __lt__(self, other): return self._compare(other, np.less)
    def __le__(self, other): return self._compare(other, np.less_equal)
    def __gt__(self, other): return self._compare(other, np.greater)
    def __ge__(self, other): return self._compare(other, np.greater_equal)
    def __eq__(self, other): return self._compare(other, np.equal)
    def __ne__(self, other): return self._compare(other, np.not_equal)
    def __invert__(self): return Tensor._make(np.asarray(~self.data), False, None)

    # ----- elementwise -----
    def exp(self): return ops.Exp.apply(self._floating())
    def log(self): return ops.Log.apply(self._floating())
    def sqrt(self): return ops.Sqrt.apply(self._floating())
    def tanh(self): return ops.Tanh.apply(self._floating())
    def sigmoid(self): return ops.Sigmoid.apply(self._floating())
    def relu(self): return ops.ReLU.apply(self)
    def abs(self): return ops.Abs.apply(self)

    def gelu(self, approximate="tanh"):
        """GELU in the tanh form GPT-2 uses (PyTorch's approximate='tanh')."""
        if approximate != "tanh":
            raise ValueError(f"only approximate='tanh' GELU is implemented, got {approximate!r}")
        return ops.GELU.apply(shapes.check_floating(self, "gelu"))

    # ----- reductions (dim=None or () reduces everything; negative dims count from the end) -----
    def sum(self, dim=None, keepdim=False): return ops.Sum.apply(self, dim=shapes.norm_dims(dim, self.ndim), keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        x = shapes.check_floating(self, "mean")
        return ops.Mean.apply(x, dim=shapes.norm_dims(dim, self.ndim), keepdim=keepdim)

    def var(self, dim=None, keepdim=False, correction=1):
        """Variance; correction=1 (Bessel, PyTorch's default) or 0 (biased, as layer norm uses)."""
        x = shapes.check_floating(self, "var")
        return ops.Var.apply(x, dim=shapes.norm_dims(dim, self.ndim), keepdim=keepdim, correction=correction)

    def max(self, dim=None, keepdim=False):
        """Largest value (like torch.amax). Ties share the gradient equally."""
        dims = shapes.norm_dims(dim, self.ndim)
        if 0 in (self.shape if dims is None else [self.shape[d] for d in dims]):
            raise ValueError(f"max over an empty dim: tensor of shape {self.shape} has no largest value there")
        return ops.Max.apply(self, dim=dims, keepdim=keepdim)

    def norm(self, dim=None, keepdim=False):
        """The 2-norm over dim (every element by default), as torch.linalg.vector_norm; at an
        all-zero input its gradient is NaN (sqrt's slope at 0), where PyTorch gives 0."""
        x = shapes.check_floating(self, "norm")
        return (x * x).sum(dim, keepdim).sqrt()

    def argmax(self, dim=None, keepdim=False):
        out = np.argmax(self.data, axis=dim, keepdims=keepdim)
        return Tensor._make(np.asarray(out, dtype=int64), False, None)

    def softmax(self, dim):
        """exp(x) / sum(exp(x)) along dim, max-subtracted. A row that is entirely -inf gives zeros."""
        return ops.Softmax.apply(shapes.check_floating(self, "softmax"), dim=shapes.norm_dim(dim, self.ndim))

    def log_softmax(self, dim):
        """x - logsumexp(x) along dim, max-subtracted. A row that is entirely -inf stays -inf."""
        return ops.LogSoftmax.apply(shapes.check_floating(self, "log_softmax"), dim=shapes.norm_dim(dim, self.ndim))

    # ----- shape ops -----
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return ops.Reshape.apply(self, shape=shapes.check_reshape(self.shape, shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        s, e = shapes.norm_dim(start_dim, self.ndim), shapes.norm_dim(end_dim, self.ndim)
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (shape {self.shape})")
        # the product, not -1: for an empty tensor (0, -1) is ambiguous
        return self.reshape(self.shape[:s] + (math.prod(self.shape[s:e + 1]),) + self.shape[e + 1:])

    def transpose(self, dim0, dim1):
        perm = list(range(self.ndim))
        d0, d1 = shapes.norm_dim(dim0, self.ndim), shapes.norm_dim(dim1, self.ndim)
        if perm:  # a 0-d tensor's one "dim" 0 swaps with itself
            perm[d0], perm[d1] = perm[d1], perm[d0]
        return ops.Permute.apply(self, dims=tuple(perm))

    @property
    def T(self):
        return ops.Permute.apply(self, dims=tuple(reversed(range(self.ndim))))

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        dims = tuple(shapes.norm_dim(d, self.ndim) for d in dims)
        if sorted(dims) != list(range(self.ndim)):
            raise ValueError(f"permute needs a permutation of {self.ndim} dims, got {dims}")
        return ops.Permute.apply(self, dims=dims)

    def expand(self, *shape):
        """Broadcast to `shape` without copying; -1 keeps a dimension."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return ops.Expand.apply(self, shape=shapes.check_expand(self.shape, shape))

    def unsqueeze(self, dim):
        d = shapes.norm_dim(dim, self.ndim + 1)
        return ops.Reshape.apply(self, shape=self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim=None):
        if dim is None:
            shape = tuple(n for n in self.shape if n != 1)
        else:
            d = shapes.norm_dim(dim, self.ndim)
            shape = self.shape[:d] + self.shape[d + 1:] if self.shape[d:d + 1] == (1,) else self.shape  # 0-d: kept
        return ops.Reshape.apply(self, shape=shape)

    def repeat_interleave(self, repeats, dim):
        """Repeat each slice along dim `repeats` times in place: [a, b] -> [a, a, b, b]."""
        d, n = shapes.dim_and_size(self.shape, dim, "repeat_interleave")
        x = self.unsqueeze(d + 1)  # (..., n, 1, ...)
        x = x.expand(self.shape[:d + 1] + (repeats,) + self.shape[d + 1:])  # (..., n, repeats, ...)
        return x.reshape(self.shape[:d] + (n * repeats,) + self.shape[d + 1:])  # (..., n*repeats, ...)

    def __getitem__(self, index):
        """Slices, ints, None, Ellipsis, integer or boolean arrays; repeated indices accumulate."""
        return ops.Index.apply(self, index=shapes.unwrap_index(index))

    def split(self, split_size_or_sections, dim=0):
        """Pieces of size `split_size` (the last may be smaller), or of the listed sizes."""
        d, n = shapes.dim_and_size(self.shape, dim, "split")
        if isinstance(split_size_or_sections, int):
            if split_size_or_sections <= 0:
                raise ValueError(f"split size must be positive, got {split_size_or_sections}")
            starts = range(0, max(n, 1), split_size_or_sections)  # an empty dim gives one empty piece, as PyTorch
            sizes = [min(split_size_or_sections, n - s) for s in starts]
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != n:
                raise ValueError(f"split sizes {sizes} do not add up to {n}, the size of dim {dim}")
        pieces, start = [], 0
        for size in sizes:
            index = (slice(None),) * d + (slice(start, start + size),)
            pieces.append(self[index])
            start += size
        return pieces

    def chunk(self, chunks, dim=0):
        """`chunks` pieces of one size (the last may be smaller, and there may be fewer), as PyTorch."""
        _, n = shapes.dim_and_size(self.shape, dim, "chunk")
        if chunks <= 0:
            raise ValueError(f"chunks must be positive, got {chunks}")
        return self.split(-(-n // chunks) if n else [0] * chunks, dim)  # an empty dim: `chunks` empty pieces

    # ----- selection -----
    def masked_fill(self, mask, value):
        """Where mask is True put `value`; the mask must broadcast to this tensor's shape."""
        mask = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
        if mask.dtype != bool_:
            raise TypeError(f"masked_fill needs a boolean mask, got dtype {mask.dtype}")
        if shapes.broadcast_shape(mask.shape, self.shape, "masked_fill") != self.shape:
            raise ValueError(f"masked_fill mask of shape {mask.shape} does not broadcast to tensor shape {self.shape}")
        return ops.MaskedFill.apply(self, mask=mask, value=value)

    def dropout(self, p=0.5, training=True):
        """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        if not training or p == 0.0:
            return self
        return ops.Dropout.apply(shapes.check_floating(self, "dropout"), p=p, rng=_rng)

    # ----- dtype -----
    def to(self, dtype):
        dtype = np.dtype(dtype)
        return self if dtype == self.dtype else ops.Cast.apply(self, dtype=dtype)

    def float(self): return self.to(float32)
    def double(self): return self.to(float64)
    def long(self): return self.to(int64)
    def bool(self): return self.to(bool_)


# ---------------------------------------------------------------------------------------
# Factories, all drawing from the one seeded generator.
# ---------------------------------------------------------------------------------------

def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def tensor(data, requires_grad=False, dtype=None):
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def from_numpy(array):
    """A Tensor sharing `array`'s memory and keeping its dtype, as torch.from_numpy (Tensor() copies)."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in dtypes.CATEGORY:
        raise TypeError(f"from_numpy needs a numpy array of a bool, integer or float dtype, got {array!r:.60}")
    return Tensor._make(array, False, None)


def zeros(*shape, dtype=float32, requires_grad=False):
    return Tensor(np.zeros(_shape(shape), dtype), requires_grad, dtype)


def ones(*shape, dtype=float32, requires_grad=False):
    return Tensor(np.ones(_shape(shape), dtype), requires_grad, dtype)


def full(shape, value, dtype=float32, requires_grad=False):
    return Tensor(np.full(_shape((shape,)), value, dtype), requires_grad, dtype)


def randn(*shape, dtype=float32, requires_grad=False):
    return Tensor(_rng.standard_normal(_shape(shape)), requires_grad, dtype)


def rand(*shape, dtype=float32, requires_grad=False):
    return Tensor(_rng.random(_shape(shape)), requires_grad, dtype)


def randint(low, high, shape):
    return Tensor(_rng.integers(low, high, size=_shape((shape,))), dtype=int64)


def arange(start, end=None, step=1, dtype=None):
    return Tensor(np.arange(start, end, step) if end is not None else np.arange(start), dtype=dtype)


def tril(x, diagonal=0):
    """Lower triangle of a matrix (or of a Tensor's data); not differentiable."""
    return Tensor(np.tril(x.data if isinstance(x, Tensor) else np.asarray(x), diagonal))


def triu(x, diagonal=0):
    return Tensor(np.triu(x.data if isinstance(x, Tensor) else np.asarray(x), diagonal))


def cat(tensors, dim=0):
    """Join tensors along an existing dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat needs at least one tensor")
    if any(t.ndim == 0 for t in tensors):
        raise ValueError(f"cat needs tensors with at least 1 dim, got shapes {[t.shape for t in tensors]} "
                         "(stack joins 0-d tensors)")
    d = shapes.norm_dim(dim, tensors[0].ndim)
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or t.shape[:d] + t.shape[d + 1:] != tensors[0].shape[:d] + tensors[0].shape[d + 1:]:
            raise ValueError(f"cat along dim {dim}: shapes {[x.shape for x in tensors]} differ outside that dim")
    return ops.Cat.apply(*dtypes.promote(*tensors), dim=d)


def stack(tensors, dim=0):
    """Join tensors of one shape along a new dim."""
    tensors = list(tensors)
    if not tensors or any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack needs tensors of one shape, got {[t.shape for t in tensors]}")
    d = shapes.norm_dim(dim, tensors[0].ndim + 1)
    return cat([t.unsqueeze(d) for t in tensors], dim=d)


def where(condition, x, y):
    """x where condition is True, else y; gradients flow to x and y, not to the condition."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if cond.dtype != bool_:
        raise TypeError(f"where needs a boolean condition, got dtype {cond.dtype}")
    x, y = dtypes.promote(x, y)
    shapes.broadcast_shape(shapes.broadcast_shape(cond.shape, x.shape, "where"), y.shape, "where")
    return ops.Where.apply(x, y, cond=cond)


from . import dtypes, ops, shapes  # noqa: E402  (ops subclasses Function, dtypes makes Tensors: defined above)
