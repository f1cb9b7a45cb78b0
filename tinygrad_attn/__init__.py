"""tinygrad_attn: a reverse-mode autograd engine on numpy, and the attention family built on it."""

from . import runtime
from .engine import (Tensor, Function, no_grad, is_grad_enabled, manual_seed, tensor, from_numpy, zeros, ones,
                     full, randn, rand, randint, arange, tril, triu, cat, stack, where,
                     float32, float64, int64, bool_)
from .finite_differences import gradcheck, GradcheckError
from .runtime import fused_ops, get_num_threads, set_num_threads

__version__ = "0.1.0"  # the same as pyproject.toml's (tests/test_api.py checks that they agree)

runtime.keep_freed_memory()
runtime.set_num_threads(runtime.default_num_threads())

__all__ = ["Tensor", "Function", "no_grad", "is_grad_enabled", "manual_seed", "tensor", "from_numpy", "zeros",
           "ones", "full", "randn", "rand", "randint", "arange", "tril", "triu", "cat", "stack", "where",
           "float32", "float64", "int64", "bool_", "gradcheck", "GradcheckError", "fused_ops", "get_num_threads",
           "set_num_threads", "__version__"]
