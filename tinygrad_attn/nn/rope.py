"""Rotary position embeddings (RoPE), Llama style, as in the book's Llama follow-up chapters.

Instead of adding a position vector to the token embedding, RoPE rotates every query and key
head by an angle proportional to its position: the pair (x_i, x_{i + head_dim/2}) is rotated
by pos * theta_i with theta_i = theta_base^(-2i / head_dim). A rotation by m*theta of a query
and by n*theta of a key leaves their dot product depending on m - n only, so attention sees
*relative* positions. Two consequences used elsewhere in this package:
  * under a KV cache the new tokens are rotated by their absolute positions (an offset),
    while the cached keys keep the rotation they were stored with;
  * left padding shifts every real token by the same amount, which changes nothing.
"""

import numpy as np

from ..engine import Tensor, cat, float64
from .module import Module


def compute_rope_params(head_dim, theta_base=10_000, context_length=4096):
    """The cos and sin tables, numpy arrays (context_length, head_dim), one row per position."""
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions: head_dim must be even, got {head_dim}")
    inv_freq = 1.0 / theta_base ** (np.arange(0, head_dim, 2) / head_dim)  # (head_dim // 2,): theta_i
    angles = np.arange(context_length)[:, None] * inv_freq[None, :]  # (context_length, head_dim // 2)
    angles = np.concatenate([angles, angles], axis=1)  # (context_length, head_dim): pair i and i + head_dim/2
    return np.cos(angles), np.sin(angles)


def apply_rope(x, cos, sin):
    """Rotate x (..., T, head_dim) by the cos, sin rows (T, head_dim) of its positions.

    With x = [x1, x2] split in halves, the rotation of each pair (x1_i, x2_i) by angle a_i is
    x * cos + [-x2, x1] * sin. Made of differentiable ops, so its gradient comes for free.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (..., T, head_dim // 2) each
    rotated = cat([-x2, x1], dim=-1)  # (..., T, head_dim)
    return x * cos + rotated * sin


class RotaryEmbedding(Module):
    """Rotates query or key heads (B, heads, T, head_dim) by their positions offset, ..., offset + T - 1.

    The tables are non-persistent float64 buffers `cos`, `sin` (context_length, head_dim),
    computed once; each call takes the rows it needs in the input's dtype.
    """

    def __init__(self, head_dim, context_length, theta_base=10_000):
        self.head_dim, self.context_length, self.theta_base = head_dim, context_length, theta_base
        cos, sin = compute_rope_params(head_dim, theta_base, context_length)
        self.register_buffer("cos", Tensor(cos, dtype=float64), persistent=False)
        self.register_buffer("sin", Tensor(sin, dtype=float64), persistent=False)

    def forward(self, x, offset=0):
        rows = slice(offset, offset + x.shape[-2])  # the attention layer checked that they fit the table
        cos = Tensor(self.cos.data[rows], dtype=x.dtype)  # (T, head_dim), broadcast over batch and heads
        sin = Tensor(self.sin.data[rows], dtype=x.dtype)
        return apply_rope(x, cos, sin)

    def extra_repr(self):
        return f"head_dim={self.head_dim}, context_length={self.context_length}, theta_base={self.theta_base}"
