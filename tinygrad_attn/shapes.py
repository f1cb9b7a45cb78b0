"""Checks of the arguments that Tensor methods take: dims, broadcasting, reshape, expand, indices, dtypes.

They raise a ValueError naming the shapes or dims at fault, at the Tensor method the user
called, so that ops.py can trust its arguments and hold nothing but the ops.
"""

import math

import numpy as np


def norm_dim(dim, ndim):
    """A dim in [-ndim, ndim) as a non-negative int."""
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ValueError(f"dim {dim} is out of range for a tensor with {ndim} dims (expected [{-ndim}, {ndim - 1}])")
    return dim % max(ndim, 1)


def norm_dims(dim, ndim):
    """An int or a tuple of ints as a sorted tuple of non-negative dims, or None for all dims:
    for None, for () (as in PyTorch) and for a 0-d tensor (whose one "dim" is everything)."""
    if dim is None:
        return None
    dims = tuple(sorted(norm_dim(d, ndim) for d in ((dim,) if isinstance(dim, int) else dim)))
    return dims if dims and ndim else None


def dim_and_size(shape, dim, op):
    """(dim as a non-negative int, its size), for ops that cut along a dim, which a 0-d tensor lacks."""
    if not shape:
        raise ValueError(f"{op} needs a tensor with at least 1 dim, got a 0-d tensor")
    d = norm_dim(dim, len(shape))
    return d, shape[d]


def check_floating(t, op):
    """t, if it is floating-point: PyTorch refuses integer tensors for mean, softmax, gelu, ..."""
    if t.dtype.kind != "f":
        raise TypeError(f"{op} needs a floating-point tensor, got dtype {t.dtype} (convert it with .float())")
    return t


def broadcast_shape(s1, s2, op):
    """The shape s1 and s2 broadcast to; ValueError naming both (and the op) if they do not."""
    try:
        return np.broadcast_shapes(s1, s2)
    except ValueError:
        raise ValueError(f"{op}: shapes {s1} and {s2} do not broadcast") from None


def check_matmul(a, b):
    """Raise unless a @ b is defined for these shapes (numpy's rules, 1-D operands promoted)."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs operands with at least 1 dim, got shapes {a.shape} and {b.shape}")
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != k_b:
        raise ValueError(f"matmul: inner dimensions differ, {a.shape} @ {b.shape} ({a.shape[-1]} != {k_b})")
    broadcast_shape(a.shape[:-2], b.shape[:-2], "matmul (batch dims)")


def check_reshape(shape, new):
    """`new` with its one -1 worked out; ValueError if it does not hold the same number of elements."""
    new = tuple(map(int, new))
    size = math.prod(shape)  # math.prod, not np.prod: 0.1 us, not 2, and a decoded token reshapes 8 times
    if -1 not in new:
        if math.prod(new) == size and min(new, default=0) >= 0:
            return new
    elif new.count(-1) == 1 and min(new) == -1:
        known = -math.prod(new)  # the product of the other sizes
        if known and size % known == 0:
            return tuple(size // known if n == -1 else n for n in new)
    raise ValueError(f"cannot reshape a tensor of shape {shape} ({size} elements) into {new}")


def check_expand(shape, new):
    """`new` with each -1 replaced by the old size; ValueError unless every old dim matches or is 1."""
    new = tuple(int(n) for n in new)
    lead = len(new) - len(shape)
    out = new[:lead] + tuple(old if n == -1 else n for old, n in zip(shape, new[lead:]))
    if lead < 0 or any(old not in (1, n) for old, n in zip(shape, out[lead:])) or any(n < 0 for n in out):
        raise ValueError(f"cannot expand a tensor of shape {shape} to {new}: each dim must match or be 1")
    return out


def unwrap_index(index):
    """Tensors and lists inside an index become numpy arrays."""
    if isinstance(index, tuple):
        return tuple(unwrap_index(i) for i in index)
    if hasattr(index, "data") and isinstance(index.data, np.ndarray):  # a Tensor
        return index.data
    return np.asarray(index) if isinstance(index, list) else index
