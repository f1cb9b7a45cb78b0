"""tinygrad_attn: a reverse-mode autograd engine on numpy, and the attention family built on it."""

from . import runtime
from .tensor import (Tensor, Function, no_grad, is_grad_enabled, manual_seed, tensor, zeros, ones, full,
                     randn, rand, randint, arange, tril, triu, cat, stack, where,
                     float32, float64, int64, bool_)
from .gradcheck import gradcheck, GradcheckError
from .runtime import fused_ops, get_num_threads, set_num_threads

runtime.keep_freed_memory()
runtime.set_num_threads(runtime.default_num_threads())

__all__ = ["Tensor", "Function", "no_grad", "is_grad_enabled", "manual_seed", "tensor", "zeros", "ones", "full",
           "randn", "rand", "randint", "arange", "tril", "triu", "cat", "stack", "where",
           "float32", "float64", "int64", "bool_", "gradcheck", "GradcheckError", "fused_ops", "get_num_threads",
           "set_num_threads"]
