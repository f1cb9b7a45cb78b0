"""tinygrad_attn.nn: modules and functions for building models, as torch.nn."""

from . import functional
from .module import (Module, Parameter, ModuleList, Sequential, register_module_forward_pre_hook,
                     register_module_forward_hook)
from .layers import Linear, Embedding, LayerNorm, Dropout, GELU, ReLU

__all__ = ["functional", "Module", "Parameter", "ModuleList", "Sequential", "register_module_forward_pre_hook",
           "register_module_forward_hook", "Linear", "Embedding", "LayerNorm", "Dropout", "GELU", "ReLU"]
