"""Stateless functions on Tensors, as torch.nn.functional (import it as F).

Each checks its inputs (naming the shapes or values at fault) and then calls engine ops.
"""

import math

import numpy as np

from .. import fused, ops
from ..runtime import fused_ops_enabled
from ..shapes import broadcast_shape, check_floating
from ..engine import Tensor
from .masks import causal_blocked


def linear(x, weight, bias=None):
    """x @ weight.T + bias; x (..., in_features), weight (out_features, in_features)."""
    if x.shape[-1:] != weight.shape[-1:]:
        raise ValueError(f"linear: input of shape {x.shape} has last dim {x.shape[-1] if x.ndim else None}, "
                         f"but the weight {weight.shape} expects {weight.shape[-1]} features")
    if fused_ops_enabled():
        return fused.Linear.apply(x, weight) if bias is None else fused.Linear.apply(x, weight, bias)
    out = x @ weight.T
    return out if bias is None else out + bias


def softmax(x, dim):
    return x.softmax(dim)


def log_softmax(x, dim):
    return x.log_softmax(dim)


def gelu(x, approximate="tanh"):
    if fused_ops_enabled() and approximate == "tanh":
        return fused.GELU.apply(x)
    return x.gelu(approximate)


def relu(x):
    return x.relu()


def dropout(x, p=0.5, training=True):
    return x.dropout(p, training)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing dims `normalized_shape`, then scale by weight and shift by bias."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not normalized_shape:
        raise ValueError("layer_norm needs a normalized_shape of at least one dim, got ()")
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"layer_norm over {normalized_shape}: input of shape {x.shape} does not end in it")
    check_floating(x, "layer_norm")
    if fused_ops_enabled() and len(normalized_shape) == 1 and weight is not None and bias is not None:
        return fused.LayerNorm.apply(x, weight, bias, eps=eps)
    out = ops.LayerNorm.apply(x, ndims=len(normalized_shape), eps=eps)
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


def cross_entropy(input, target, ignore_index=-100, reduction="mean"):
    """Cross-entropy of logits against class indices, fused with log-softmax for stability.

    input (N, C) with target (N,), or (N, C, d1, ...) with target (N, d1, ...), or (C,) with a
    scalar target, as PyTorch. Targets equal to ignore_index count for nothing; the mean is over
    the others (0 if there are none: see ops.CrossEntropy).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if input.ndim == 0:
        raise ValueError("cross_entropy needs input of shape (C,), (N, C) or (N, C, d1, ...), got ()")
    check_floating(input, "cross_entropy")
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy targets must be integer class indices, got dtype {t.dtype}")
    expected = () if input.ndim == 1 else (input.shape[0],) + input.shape[2:]
    if t.shape != expected:
        raise ValueError(f"cross_entropy: input of shape {input.shape} needs target of shape {expected}, "
                         f"got {t.shape}")
    if input.ndim == 1:
        logits = input.reshape(1, -1)  # (1, C)
    else:
        logits = input if input.ndim == 2 else input.permute(0, *range(2, input.ndim), 1)  # class dim last
        logits = logits.reshape(-1, input.shape[1])  # (N * d1 * ..., C)
    t_flat = t.reshape(-1)
    C = logits.shape[1]
    bad = (t_flat != ignore_index) & ((t_flat < 0) | (t_flat >= C))
    if bad.any():
        raise ValueError(f"cross_entropy: target value {int(t_flat[bad][0])} is out of range for {C} classes "
                         f"(valid: 0..{C - 1}, or ignore_index={ignore_index})")
    loss = ops.CrossEntropy.apply(logits, target=t_flat.astype(np.int64), ignore_index=ignore_index,
                                  reduction=reduction)
    return loss.reshape(t.shape) if reduction == "none" else loss


def causal_mask(T_q, T_k=None):
    """(T_q, T_k) boolean Tensor, True where query i MAY attend to key j: an attn_mask for
    scaled_dot_product_attention (PyTorch's torch.nn.attention.bias.causal_lower_right).

    The queries are the *last* T_q of the T_k positions (as in decoding with a KV cache):
    query i sits at position T_k - T_q + i and sees the keys j <= that position.
    """
    return Tensor(~causal_blocked(T_q, T_q if T_k is None else T_k))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """softmax(query @ key^T * scale + mask) @ value, with PyTorch's semantics.

    query (..., H_q, L, E), key (..., H_k, S, E), value (..., H_k, S, E_v) -> (..., H_q, L, E_v).
    scale defaults to 1/sqrt(E).
    attn_mask: a boolean mask where **True means "may attend"** (False is masked out), or a
      float mask added to the scores; it must broadcast to (..., L, S).
    is_causal: query i attends to keys j <= i, aligned at the top-left like PyTorch (for a
      query shorter than the keys, as in cached decoding, pass attn_mask=causal_mask(L, S)
      instead, which aligns the queries with the *last* keys).
    enable_gqa: H_q may be a multiple of H_k; each key/value head then serves H_q / H_k
      consecutive query heads (repeat_interleave order).
    dropout_p is applied whenever > 0 (as in PyTorch, pass 0.0 in eval mode).
    A query whose every key is masked gets zero weights and a zero output, not NaN.
    """
    mask = _check_sdpa(query, key, value, attn_mask, is_causal, enable_gqa)
    L, S = query.shape[-2], key.shape[-2]
    if enable_gqa and query.ndim >= 3 and query.shape[-3] != key.shape[-3]:
        group = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(group, dim=-3)  # (..., H_q, S, E)
        value = value.repeat_interleave(group, dim=-3)  # (..., H_q, S, E_v)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, S)
    if is_causal:
        scores = scores.masked_fill(causal_blocked(L, S, offset=0), float("-inf"))  # aligned top-left
    elif mask is not None and mask.dtype == bool:
        scores = scores.masked_fill(~mask, float("-inf"))  # PyTorch's True = attend, as our True = blocked
    elif mask is not None:
        scores = scores + Tensor(mask, dtype=scores.dtype)  # a float mask is added
    weights = scores.softmax(-1)
    if dropout_p > 0.0:
        weights = weights.dropout(dropout_p)
    return weights @ value  # (..., L, E_v)


def _check_sdpa(query, key, value, attn_mask, is_causal, enable_gqa):
    """The checks of scaled_dot_product_attention's arguments; returns attn_mask as an array or None."""
    if query.ndim < 2 or key.ndim != query.ndim or value.ndim != query.ndim:
        raise ValueError(f"scaled_dot_product_attention needs query, key, value of one rank >= 2, got shapes "
                         f"{query.shape}, {key.shape}, {value.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: query {query.shape} and key {key.shape} must share the "
                         f"last dim, key and value {value.shape} the sequence dim")
    if enable_gqa and query.ndim >= 3 and query.shape[-3] != key.shape[-3]:
        hq, hk = query.shape[-3], key.shape[-3]
        if hq % hk or value.shape[-3] != hk:
            raise ValueError(f"enable_gqa: {hq} query heads must be a multiple of {hk} key heads "
                             f"(value has {value.shape[-3]})")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
    if attn_mask is None:
        return None
    mask = attn_mask.data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
    if mask.dtype.kind not in "bf":  # as PyTorch: an integer 1/0 mask would silently be added as a bias
        raise TypeError(f"attn_mask must be bool (True = may attend) or floating (added to the scores), got "
                        f"{mask.dtype}; for a 1/0 padding mask (1 = a real token) pass attn_mask=mask.bool()")
    key_batch = key.shape[:-3] + query.shape[-3:-2] if enable_gqa and query.ndim >= 3 else key.shape[:-2]
    scores_shape = broadcast_shape(query.shape[:-2], key_batch, "scaled_dot_product_attention") + (
        query.shape[-2], key.shape[-2])  # (..., L, S)
    try:
        fits = np.broadcast_shapes(mask.shape, scores_shape) == scores_shape  # it may not enlarge them
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"attn_mask of shape {mask.shape} does not broadcast to the scores "
                         f"{scores_shape} (..., L={query.shape[-2]}, S={key.shape[-2]})")
    return mask


__all__ = ["linear", "softmax", "log_softmax", "gelu", "relu", "dropout", "layer_norm", "cross_entropy",
           "scaled_dot_product_attention", "causal_mask"]
