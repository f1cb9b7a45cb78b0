"""One mask convention inside every attention layer: a boolean array, True where a query may
NOT look at a key (what masked_fill takes), and one function that builds the causal ones.

Two public edges speak other conventions, and each is converted once, where it enters:
  * attention_mask (B, T), as tokenizers produce it: 1 for a real token, 0 for padding
    -> padding_mask() gives True at padding;
  * F.scaled_dot_product_attention's boolean attn_mask: True where a query MAY attend, as
    in PyTorch -> its negation. F.causal_mask builds such a mask for SDPA.
"""

import numpy as np

from ..engine import Tensor


def causal_blocked(T_q, T_k, offset=None, window=None):
    """(T_q, T_k) bool numpy array, True where query i may not see key j.

    Query i sits at the key position offset + i and sees the keys j <= offset + i: nothing of
    the future. offset defaults to T_k - T_q, the queries being the last T_q positions of the
    keys (self-attention, with or without a KV cache before them); offset=0 aligns them at
    the top-left instead (PyTorch's is_causal). With a window, query i sees only the `window`
    most recent keys, offset + i - window < j <= offset + i: a band (sliding-window attention).
    """
    offset = T_k - T_q if offset is None else offset
    query_pos = offset + np.arange(T_q)[:, None]  # (T_q, 1)
    key_pos = np.arange(T_k)[None, :]  # (1, T_k)
    blocked = key_pos > query_pos  # the future
    if window is not None:
        blocked |= key_pos <= query_pos - window  # the keys that slid out of the window
    return blocked


def padding_mask(attention_mask, shape, name="attention_mask", of="input"):
    """attention_mask (1 = real token, 0 = padding) as a bool numpy array of `shape`, True at padding.

    None if there is no mask or nothing is padding. ValueError for another shape or other values,
    naming the argument (`name`) and whose shape it must have (`of`: the input, the memory).
    """
    if attention_mask is None:
        return None
    mask = np.asarray(attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} must have the {of}'s shape without its last dim, {tuple(shape)}, got {mask.shape}")
    pad = mask == 0
    if not (pad | (mask == 1)).all():
        raise ValueError(f"{name} holds 1 for real tokens and 0 for padding, got the values "
                         f"{np.unique(mask[~pad & (mask != 1)])[:5].tolist()}")
    return pad if pad.any() else None


def blocked_scores(blocked, pad, ndim):
    """The scores a query may not look at, as one bool array that broadcasts to scores of ndim dims, or None.

    blocked (T_q, T_k) or None: True where a query may not look; pad (b, T_k) (or (T_k,) without
    a batch) or None: True at padding keys, one row per batch element, broadcast over heads and queries.
    """
    if pad is not None:
        pad = pad.reshape(pad.shape[:-1] + (1,) * (ndim - pad.ndim) + pad.shape[-1:])  # (b, 1, .., T_k)
        blocked = pad if blocked is None else blocked | pad
    return blocked


def mask_scores(attn_scores, blocked, pad):
    """Fill the blocked scores (blocked_scores' arguments) with -inf, so that softmax gives them weight exactly 0.

    -inf, not a large negative number: a very negative score still gets a tiny weight. A
    query that may see no key at all gets all-zero weights from the softmax, not NaN.
    """
    blocked = blocked_scores(blocked, pad, attn_scores.ndim)
    return attn_scores if blocked is None else attn_scores.masked_fill(blocked, float("-inf"))
