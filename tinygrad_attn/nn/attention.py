"""The attention ladder of Raschka, "Build a Large Language Model (From Scratch)", chapter 3,
and its grouped-query and KV-cache follow-ups, one rung at a time, with the book's names.

  1. simple_self_attention      no weights: the scores are dot products of the inputs themselves
  2. SelfAttention_v1           + trainable W_query, W_key, W_value (raw Parameters), scaled scores
  3. SelfAttention_v2           the same with Linear layers
  4. CausalAttention            + causal mask, dropout on the attention weights, a batch dim
  5. MultiHeadAttentionWrapper  num_heads causal heads side by side, outputs concatenated
  6. MultiHeadAttention         one projection split into heads, out_proj; + KV cache, RoPE option
  7. GroupedQueryAttention      fewer key/value heads, each shared by a group of query heads

What every layer adds to the book's version, the same way:
  * `attention_mask`: an optional padding mask shaped like the input without its last dim,
    (B, T), 1 for real tokens and 0 for padding, as tokenizers produce it (left padding for
    decoders). Padding keys get weight exactly 0. A query that may see no key at all (a
    padding slot under left padding and the causal mask) gets all-zero weights, not NaN.
  * `last_attn_weights`: after every call, the attention weights (..., heads, T_q, T_k) before
    dropout, detached from the graph, for drawing heatmaps (heads = 1 for the one-head rungs).
  * Bad shapes raise ValueError naming the numbers.
"""

import numpy as np

from ..tensor import cat, default_rng
from .layers import Dropout, Linear
from .masks import causal_blocked, mask_scores, padding_mask
from .module import Module, ModuleList, Parameter
from .rope import RotaryEmbedding


def check_input(layer, x, ranks=(3,), past=0):
    """Raise a ValueError naming the shapes unless x is (batch, num_tokens, d_in) (or another listed
    rank) and, for a layer with a context_length, its tokens after the `past` cached ones fit in it."""
    name = type(layer).__name__
    if x.ndim not in ranks or x.shape[-1] != layer.d_in:
        layouts = {2: "(num_tokens, d_in)", 3: "(batch, num_tokens, d_in)"}
        expected = " or ".join(layouts[r] for r in ranks)
        raise ValueError(f"{name} expects input {expected} with d_in={layer.d_in}, got shape {tuple(x.shape)}")
    check_fits(name, x.shape[-2], past, getattr(layer, "context_length", None))


def check_fits(name, num_tokens, past, context_length):
    """Raise a ValueError unless `num_tokens` new tokens after `past` cached ones fit in context_length."""
    if context_length is not None and past + num_tokens > context_length:
        if past:
            raise ValueError(f"{name}: {num_tokens} new tokens after the {past} in the KV cache would make "
                             f"{past + num_tokens}, more than context_length={context_length}; call reset_cache()")
        raise ValueError(f"{name}: {num_tokens} tokens exceed context_length={context_length}")


# ---------------------------------------------------------------------------------------
# 1. Simplified self-attention (book section 3.3): no trainable weights
# ---------------------------------------------------------------------------------------

def simple_self_attention(inputs):
    """Self-attention of the inputs with themselves: inputs (T, d) or (B, T, d).

    Returns (attn_weights (..., T, T), context (..., T, d)). The score of query i with key j
    is the dot product of inputs i and j; softmax turns each row of scores into weights that
    sum to 1; context vector i is the weighted sum of all inputs.
    """
    if inputs.ndim not in (2, 3):
        raise ValueError(f"simple_self_attention expects inputs (num_tokens, d) or (batch, num_tokens, d), "
                         f"got shape {tuple(inputs.shape)}")
    attn_scores = inputs @ inputs.transpose(-2, -1)  # (..., T, T)
    attn_weights = attn_scores.softmax(dim=-1)  # (..., T, T), rows sum to 1
    context = attn_weights @ inputs  # (..., T, d)
    return attn_weights, context


# ---------------------------------------------------------------------------------------
# 2. Self-attention with trainable weights (book section 3.4)
# ---------------------------------------------------------------------------------------

class SelfAttention_v1(Module):
    """Self-attention with trainable projections held as raw Parameters (book listing 3.1).

    New: queries, keys and values are x @ W_query, x @ W_key, x @ W_value, each W (d_in, d_out)
    initialised uniform in [0, 1) like the book's torch.rand; the scores are divided by
    sqrt(d_out), so that their spread, and softmax's saturation, does not grow with d_out.
    x (T, d_in) or (B, T, d_in) -> context (..., T, d_out).
    """

    def __init__(self, d_in, d_out):
        self.d_in, self.d_out = d_in, d_out
        self.W_query = Parameter(default_rng().random((d_in, d_out)))
        self.W_key = Parameter(default_rng().random((d_in, d_out)))
        self.W_value = Parameter(default_rng().random((d_in, d_out)))
        self.last_attn_weights = None

    def project(self, x):
        """Queries, keys, values: (..., T, d_out) each."""
        return x @ self.W_query, x @ self.W_key, x @ self.W_value

    def forward(self, x, attention_mask=None):
        check_input(self, x, ranks=(2, 3))
        queries, keys, values = self.project(x)  # (..., T, d_out) each
        attn_scores = queries @ keys.transpose(-2, -1)  # (..., T, T); the book's keys.T, batched
        attn_scores = mask_scores(attn_scores, None, padding_mask(attention_mask, x.shape[:-1]))
        attn_weights = (attn_scores / keys.shape[-1] ** 0.5).softmax(dim=-1)  # (..., T, T)
        self.last_attn_weights = attn_weights.detach().unsqueeze(-3)  # (..., 1, T, T)
        return attn_weights @ values  # (..., T, d_out)


class SelfAttention_v2(SelfAttention_v1):
    """The same with Linear layers (book listing 3.2): new, only the projections.

    Linear stores its weight transposed, (d_out, d_in), and computes x @ weight.T (+ bias if
    qkv_bias), so v1 and v2 agree when v2's weights are v1's transposed. Linear's
    initialisation (uniform in +-1/sqrt(d_in)) also trains better than v1's [0, 1).
    """

    def __init__(self, d_in, d_out, qkv_bias=False):
        self.d_in, self.d_out = d_in, d_out
        self.W_query = Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias)
        self.last_attn_weights = None

    def project(self, x):
        return self.W_query(x), self.W_key(x), self.W_value(x)


# ---------------------------------------------------------------------------------------
# 4. Causal attention (book section 3.5): hide the future, drop out attention weights
# ---------------------------------------------------------------------------------------

class CausalAttention(Module):
    """One causal attention head over a batch (book listing 3.3). x (b, num_tokens, d_in) -> (b, num_tokens, d_out).

    New: token i may only attend to tokens j <= i (the `mask` buffer, True above the diagonal,
    fills the future's scores with -inf), and dropout zeroes random attention weights in
    training (scaling the rest by 1/(1-dropout)).
    """

    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        self.d_in, self.d_out, self.context_length = d_in, d_out, context_length
        self.W_query = Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = Dropout(dropout)
        # The book's buffer, True above the diagonal (the future); bool, not the book's 0./1.
        # floats, so that no call converts it (load_state_dict converts a book module's float mask).
        self.register_buffer("mask", causal_blocked(context_length, context_length))
        self.last_attn_weights = None

    def forward(self, x, attention_mask=None):
        check_input(self, x)
        b, num_tokens, _ = x.shape
        keys = self.W_key(x)  # (b, num_tokens, d_out)
        queries = self.W_query(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.transpose(1, 2)  # (b, num_tokens, num_tokens)
        mask_bool = self.mask.data[:num_tokens, :num_tokens]  # (num_tokens, num_tokens), a view
        attn_scores = mask_scores(attn_scores, mask_bool, padding_mask(attention_mask, (b, num_tokens)))
        attn_weights = (attn_scores / keys.shape[-1] ** 0.5).softmax(dim=-1)  # (b, num_tokens, num_tokens)
        self.last_attn_weights = attn_weights.detach().unsqueeze(1)  # (b, 1, num_tokens, num_tokens)
        attn_weights = self.dropout(attn_weights)
        return attn_weights @ values  # (b, num_tokens, d_out)


# ---------------------------------------------------------------------------------------
# 5. Multi-head attention as a stack of heads (book section 3.6.1)
# ---------------------------------------------------------------------------------------

class MultiHeadAttentionWrapper(Module):
    """num_heads independent CausalAttention heads, outputs concatenated (book listing 3.4).

    x (b, num_tokens, d_in) -> (b, num_tokens, num_heads * d_out). Each head has its own
    projections and learns to look for something else; running them one after another is
    simple but slow, which the next rung fixes.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        if num_heads < 1:
            raise ValueError(f"num_heads must be at least 1, got {num_heads}")
        self.heads = ModuleList([CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)
                                 for _ in range(num_heads)])
        self.last_attn_weights = None

    def forward(self, x, attention_mask=None):
        outputs = [head(x, attention_mask) for head in self.heads]  # num_heads x (b, num_tokens, d_out)
        context_vec = cat(outputs, dim=-1)  # (b, num_tokens, num_heads * d_out)
        self.last_attn_weights = cat([head.last_attn_weights for head in self.heads], dim=1)  # (b, num_heads, T, T)
        return context_vec


# ---------------------------------------------------------------------------------------
# 6. Multi-head attention with weight splits (book section 3.6.2), KV cache, RoPE
# ---------------------------------------------------------------------------------------

class MultiHeadAttention(Module):
    """Multi-head causal attention from one projection per Q, K, V (book listing 3.5).

    x (b, num_tokens, d_in) -> (b, num_tokens, d_out). New: W_query, W_key, W_value map to
    d_out = num_heads * head_dim at once and the result is split into num_heads heads: one big
    matmul instead of num_heads small ones. The heads' outputs are concatenated back to
    d_out and mixed by out_proj (a Linear with bias).

    Beyond chapter 3:
      * KV cache (forward(..., use_cache=True)): what the layer needs of earlier tokens (here
        their keys and values, `cache_k`, `cache_v` (b, num_kv_heads, T_k, head_dim)) is kept,
        so a prompt is prefilled in one call and then one or more tokens are decoded per call,
        each attending to everything before it. `ptr_current_pos` counts the cached tokens;
        the new queries sit at absolute positions ptr_current_pos, ... and get those rows of
        the causal mask. `cache_pad` remembers which cached keys are padding. reset_cache()
        empties it; going past context_length is a ValueError.
      * rope=True rotates queries and keys by their absolute positions (RotaryEmbedding).

    The later rungs change one step each, by overriding one method: to_cache (what is kept of
    a new token), from_cache (the keys and values attention reads from it: GQA shares heads
    there), update_cache (how the cache grows) or the `mask` buffer. num_kv_heads sizes
    W_key and W_value; it is num_heads here, and only a rung that shares key/value heads in
    from_cache may make it smaller.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False, rope=False,
                 num_kv_heads=None):
        if num_heads < 1 or d_out % num_heads:
            raise ValueError(f"d_out={d_out} must be divisible by num_heads={num_heads}")
        self.d_in, self.d_out, self.context_length = d_in, d_out, context_length
        self.num_heads = num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if self.num_kv_heads != num_heads and type(self).from_cache is MultiHeadAttention.from_cache:
            raise ValueError(f"{type(self).__name__} gives each of its num_heads={num_heads} query heads its own "
                             f"key/value head; for num_kv_heads={num_kv_heads} use GroupedQueryAttention")
        self.head_dim = d_out // num_heads
        self.W_query = Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = Linear(d_in, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.W_value = Linear(d_in, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.out_proj = Linear(d_out, d_out)  # combines the heads' outputs
        self.dropout = Dropout(dropout)
        self.register_buffer("mask", causal_blocked(context_length, context_length))  # True = the future
        self.rope = RotaryEmbedding(self.head_dim, context_length) if rope else None
        self.last_attn_weights = None
        self.reset_cache()

    def reset_cache(self):
        """Empty the KV cache: the next use_cache=True call starts again at position 0."""
        self.cache, self.cache_pad = None, None
        self.ptr_current_pos = 0

    cache_k = property(lambda self: None if self.cache is None else self.cache[0], doc="cached keys, or None")
    cache_v = property(lambda self: None if self.cache is None else self.cache[1], doc="cached values, or None")

    def split_heads(self, t, num_heads):
        """(b, num_tokens, num_heads * head_dim) -> (b, num_heads, num_tokens, head_dim)."""
        b, num_tokens, _ = t.shape
        t = t.view(b, num_tokens, num_heads, self.head_dim)  # (b, num_tokens, num_heads, head_dim)
        return t.transpose(1, 2)  # (b, num_heads, num_tokens, head_dim)

    def forward(self, x, attention_mask=None, use_cache=False):
        start = self.ptr_current_pos if use_cache else 0  # absolute position of the first new token
        check_input(self, x, past=start)
        pad = padding_mask(attention_mask, x.shape[:-1])
        queries = self.W_query(x)  # (b, num_tokens, d_out)
        queries = self.split_heads(queries, self.num_heads)  # (b, num_heads, num_tokens, head_dim)
        if self.rope is not None:
            queries = self.rope(queries, start)
        cached = self.to_cache(x, start)  # what the cache keeps of the new tokens
        if use_cache:
            cached, pad = self.update_cache(cached, pad)  # ... and of every token before them
        keys, values = self.from_cache(cached)  # (b, num_heads, T_k, head_dim) each
        return self.attend(queries, keys, values, start, pad)

    def to_cache(self, x, start):
        """The keys and values of the new tokens, (b, num_kv_heads, num_tokens, head_dim) each; with
        RoPE the keys are rotated by their absolute positions, and cached with that rotation."""
        keys, values = self.W_key(x), self.W_value(x)  # (b, num_tokens, num_kv_heads * head_dim) each
        keys = self.split_heads(keys, self.num_kv_heads)  # (b, num_kv_heads, num_tokens, head_dim)
        values = self.split_heads(values, self.num_kv_heads)  # (b, num_kv_heads, num_tokens, head_dim)
        if self.rope is not None:
            keys = self.rope(keys, start)
        return keys, values

    def from_cache(self, cached):
        """The keys and values attention reads from what to_cache kept: here they are that already."""
        return cached

    def update_cache(self, new, pad):
        """Append the new tokens' cache entries (each (b, ..., num_tokens, d): tokens on dim -2) and
        their padding (b, num_tokens) or None.

        Returns the entries and the padding (b, T_k) or None of every cached token.
        """
        b, num_tokens = new[0].shape[0], new[0].shape[-2]
        if self.cache is None:
            self.cache = new
        elif self.cache[0].shape[0] != b:
            raise ValueError(f"the KV cache holds a batch of {self.cache[0].shape[0]}, got a batch of {b}; "
                             "call reset_cache() before a new batch")
        else:
            self.cache = tuple(cat([old, t], dim=-2) for old, t in zip(self.cache, new))  # (b, ..., T_k, d)
        if pad is not None or self.cache_pad is not None:
            old = self.cache_pad if self.cache_pad is not None else np.zeros((b, self.ptr_current_pos), dtype=bool)
            new_pad = pad if pad is not None else np.zeros((b, num_tokens), dtype=bool)
            self.cache_pad = np.concatenate([old, new_pad], axis=1)  # (b, T_k)
        self.ptr_current_pos += num_tokens
        return self.cache, self.cache_pad

    def attend(self, queries, keys, values, start, pad):
        """Causal attention of queries (b, num_heads, num_tokens, head_dim) at absolute positions
        start, ..., start + num_tokens - 1 over keys, values (b, num_heads, T_k, head_dim), the
        last of which sits at the last query's position; padding pad (b, T_k) or None
        -> (b, num_tokens, d_out).
        """
        b, _, num_tokens, _ = queries.shape
        end = start + num_tokens
        attn_scores = queries @ keys.transpose(2, 3)  # (b, num_heads, num_tokens, T_k)
        # The mask rows of the queries' absolute positions: with a cache the queries are the last
        # num_tokens of T_k positions, where a square [:num_tokens, :num_tokens] slice would be wrong.
        mask_bool = self.mask.data[start:end, end - keys.shape[2]:end]  # (num_tokens, T_k)
        attn_scores = mask_scores(attn_scores, mask_bool, pad)
        attn_weights = (attn_scores / keys.shape[-1] ** 0.5).softmax(dim=-1)  # (b, num_heads, num_tokens, T_k)
        self.last_attn_weights = attn_weights.detach()
        attn_weights = self.dropout(attn_weights)
        context_vec = (attn_weights @ values).transpose(1, 2)  # (b, num_tokens, num_heads, head_dim)
        context_vec = context_vec.reshape(b, num_tokens, self.d_out)  # (b, num_tokens, d_out): heads side by side
        return self.out_proj(context_vec)  # (b, num_tokens, d_out)


# ---------------------------------------------------------------------------------------
# 7. Grouped-query attention (the book's GQA follow-up; Llama 2 70B, Llama 3, ...)
# ---------------------------------------------------------------------------------------

class GroupedQueryAttention(MultiHeadAttention):
    """Multi-head attention with num_kv_heads key/value heads, each shared by a group of
    group_size = num_heads / num_kv_heads consecutive query heads.

    x (b, num_tokens, d_in) -> (b, num_tokens, d_out). New: W_key and W_value map to
    num_kv_heads * head_dim only, and before attention each key/value head is repeated for
    its group in repeat_interleave order: key/value head k serves query heads
    k * group_size, ..., (k + 1) * group_size - 1. The KV cache stores keys and values
    *before* that repetition, (b, num_kv_heads, T_k, head_dim): num_kv_heads / num_heads of
    multi-head attention's cache, which is the memory GQA exists to save.
    num_kv_heads == num_heads is multi-head attention; num_kv_heads == 1 is multi-query attention.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, num_kv_heads, qkv_bias=False, rope=False):
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} must be divisible by num_kv_heads={num_kv_heads}")
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias, rope, num_kv_heads)
        self.group_size = num_heads // num_kv_heads

    def from_cache(self, cached):
        """New: share each key/value head with its group of query heads, [k0, k1] -> [k0, k0, k1, k1]."""
        keys, values = cached  # (b, num_kv_heads, T_k, head_dim) each: the cache keeps them unshared
        keys = keys.repeat_interleave(self.group_size, dim=1)  # (b, num_heads, T_k, head_dim)
        values = values.repeat_interleave(self.group_size, dim=1)  # (b, num_heads, T_k, head_dim)
        return keys, values


__all__ = ["simple_self_attention", "SelfAttention_v1", "SelfAttention_v2", "CausalAttention",
           "MultiHeadAttentionWrapper", "MultiHeadAttention", "GroupedQueryAttention"]
