"""tinygrad_attn.nn: modules and functions for building models, as torch.nn."""

from . import functional
from .module import (Module, Parameter, ModuleList, Sequential, register_module_forward_pre_hook,
                     register_module_forward_hook)
from .layers import Linear, Embedding, LayerNorm, Dropout, GELU, ReLU
from .rope import RotaryEmbedding
from .attention import (simple_self_attention, SelfAttention_v1, SelfAttention_v2, CausalAttention,
                        MultiHeadAttentionWrapper, MultiHeadAttention, GroupedQueryAttention, BidirectionalAttention,
                        CrossAttention, SlidingWindowAttention, MultiHeadLatentAttention)
from .transformer import TransformerConfig, Transformer

__all__ = ["functional", "Module", "Parameter", "ModuleList", "Sequential", "register_module_forward_pre_hook",
           "register_module_forward_hook", "Linear", "Embedding", "LayerNorm", "Dropout", "GELU", "ReLU",
           "RotaryEmbedding", "simple_self_attention", "SelfAttention_v1", "SelfAttention_v2", "CausalAttention",
           "MultiHeadAttentionWrapper", "MultiHeadAttention", "GroupedQueryAttention", "BidirectionalAttention",
           "CrossAttention", "SlidingWindowAttention", "MultiHeadLatentAttention", "TransformerConfig", "Transformer"]
