"""The dtype of an op's result, by PyTorch's rule rather than numpy's.

numpy makes int64 + float32 float64, and a float32 array times a 0-d float64 array float64;
PyTorch keeps both float32. A teaching engine should compute in the dtype a PyTorch user
expects, so tensor.py promotes its operands here before handing numpy the arrays.
"""

import functools

import numpy as np

from .tensor import Tensor, bool_, float32, int64

CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}  # bool < integer < floating, by numpy's dtype.kind


def default_dtype(arr):
    """The dtype user data becomes: float32 (PyTorch's default dtype) for floats, else int64 or bool."""
    if arr.dtype.kind not in CATEGORY:
        raise TypeError(f"cannot make a Tensor from data of dtype {arr.dtype}")
    return {"f": float32, "b": bool_}.get(arr.dtype.kind, int64)


def promote_types(a, b):
    """The higher category's dtype (int64 with float32 is float32); numpy's promotion within one."""
    ca, cb = CATEGORY[a.kind], CATEGORY[b.kind]
    return np.promote_types(a, b) if ca == cb else a if ca > cb else b


def result_type(*operands):
    """The dtype of an elementwise op on Tensors and numbers, as torch.result_type.

    Tensors with dims decide; 0-d tensors, then numbers, count only if their category is
    higher, a Python float then meaning float32. So int64 + 0.5 is float32, and a float32
    vector times a 0-d float64 tensor stays float32. A numpy array counts as a number does:
    float64 + an array of floats stays float64, float32 + the same array float32.
    """
    tiers = ([], [], [])  # dtypes of tensors with dims, of 0-d tensors, of numbers and arrays
    for x in operands:
        if isinstance(x, Tensor):
            tiers[x.ndim == 0].append(x.dtype)
        else:
            tiers[2].append(default_dtype(np.asarray(x)))
    result = None
    for dtypes in filter(None, tiers):
        dtype = functools.reduce(promote_types, dtypes)
        if result is None or CATEGORY[dtype.kind] > CATEGORY[result.kind]:
            result = dtype
    return result


def promote(*operands):
    """Tensors, numbers or arrays, as Tensors of their result_type (a Cast only where one is needed)."""
    dtype = result_type(*operands)
    return [x.to(dtype) if isinstance(x, Tensor) else Tensor(x, dtype=dtype) for x in operands]
