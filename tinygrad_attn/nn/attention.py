"""The attention ladder of Raschka, "Build a Large Language Model (From Scratch)", chapter 3,
and its follow-ups, one rung at a time, with the book's names; each rung reuses the one before
and overrides only what is new.

  1. simple_self_attention      no weights: the scores are dot products of the inputs themselves
  2. SelfAttention_v1           + trainable W_query, W_key, W_value (raw Parameters), scaled scores
  3. SelfAttention_v2           the same with Linear layers
  4. CausalAttention            + causal mask, dropout on the attention weights, a batch dim
  5. MultiHeadAttentionWrapper  num_heads causal heads side by side, outputs concatenated
  6. MultiHeadAttention         one projection split into heads, out_proj; + KV cache, RoPE option
  7. GroupedQueryAttention      fewer key/value heads, each shared by a group of query heads;
                                from_multihead() mean-pools a trained MHA into one
  8. BidirectionalAttention     no causal mask: an encoder's self-attention
  9. CrossAttention             keys and values from another sequence (the encoder's output)
 10. SlidingWindowAttention     only the `window` most recent keys: a band mask, a cache that stays small
 11. MultiHeadLatentAttention   keys and values up-projected from a small cached latent (DeepSeek-V2)

kv_cache_bytes() gives the cache memory of each rung; torch_multihead_state_dict() and
load_torch_multihead_state_dict() map the weights to and from torch.nn.MultiheadAttention.

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

from ..engine import cat, default_rng, from_numpy, zeros
from ..fused import attention
from .layers import Dropout, Linear
from .masks import blocked_scores, causal_blocked, mask_scores, padding_mask
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

    The later rungs change one step each, by overriding one hook: init_kv_projections (the
    weights keys and values are made with), to_cache (what is kept of a new token),
    from_cache (the keys and values attention reads from it: GQA shares heads there),
    update_cache (how the cache grows), or the class attributes `causal` and `window` that
    the `mask` buffer is built from. num_kv_heads sizes W_key and W_value; it is num_heads
    here, and only a rung that shares key/value heads in from_cache may make it smaller.
    """

    causal = True  # a query sees no later key (BidirectionalAttention: every key)
    window = None  # ... and every earlier one (SlidingWindowAttention: the `window` most recent)

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
        self.init_kv_projections(d_in, qkv_bias)
        self.out_proj = Linear(d_out, d_out)  # combines the heads' outputs
        self.dropout = Dropout(dropout)
        if self.causal:  # True = the future (and with a window, the far past)
            self.register_buffer("mask", causal_blocked(context_length, context_length, window=self.window))
        self.rope = RotaryEmbedding(self.head_dim, context_length) if rope else None
        self._attn_weights = None  # last_attn_weights, or what computes it: see the property
        self.reset_cache()

    @property
    def last_attn_weights(self):
        """The attention weights of the last call (b, num_heads, num_tokens, T_k), before dropout,
        without a graph. The fused op keeps no such array: they are computed when first asked for,
        from the queries and keys it keeps, and then kept."""
        if callable(self._attn_weights):
            self._attn_weights = self._attn_weights()
        return self._attn_weights

    @last_attn_weights.setter
    def last_attn_weights(self, weights):
        self._attn_weights = weights

    @property
    def cache_capacity(self):
        """Tokens the cache buffers are allocated for: every position, context_length."""
        return self.context_length

    def init_kv_projections(self, d_in, qkv_bias):
        """W_key and W_value, Linear(d_in, num_kv_heads * head_dim) each: what keys and values are made with."""
        self.W_key = Linear(d_in, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.W_value = Linear(d_in, self.num_kv_heads * self.head_dim, bias=qkv_bias)

    def reset_cache(self):
        """Empty the KV cache: the next use_cache=True call starts again at position 0."""
        self.cache_buffers, self.cache_pad_buffer = None, None  # (b, ..., capacity, d) Tensors; (b, capacity) bool
        self.cache_span = (0, 0)  # the buffers' token positions [first, end) that hold the cached tokens
        self.ptr_current_pos = 0

    @property
    def cache(self):
        """What the cache keeps of every cached token, (b, ..., T_k, d) Tensors (views of the buffers), or None."""
        if self.cache_buffers is None:
            return None
        first, end = self.cache_span
        return tuple(from_numpy(buffer.data[..., first:end, :]) for buffer in self.cache_buffers)  # (no graph to record)

    @property
    def cache_pad(self):
        """(b, T_k) bool, True at the cached padding tokens; None if no padding was cached."""
        first, end = self.cache_span
        return None if self.cache_pad_buffer is None else self.cache_pad_buffer[:, first:end]

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
        keys, values = self.from_cache(cached, start + x.shape[1])  # (b, num_heads, T_k, head_dim) each
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

    def from_cache(self, cached, end):
        """The keys and values attention reads from what the cache keeps of the tokens before position
        `end` (the last T_k of them): here they are that already."""
        return cached

    def update_cache(self, new, pad):
        """Write the new tokens' cache entries (each (b, ..., num_tokens, d): tokens on dim -2) and their
        padding (b, num_tokens) or None into the cache, after the tokens it keeps.

        Returns the entries and the padding (b, T_k) or None of every cached token. The cache is
        written in place: buffers for cache_capacity tokens are allocated at the first call, and
        a decoding step writes one token's keys and values into them, where appending with cat
        would copy the whole cache every token. The earlier tokens' entries are data, without a
        graph; if this call records one (training with use_cache=True), its own entries keep theirs.
        """
        b, num_tokens = new[0].shape[0], new[0].shape[-2]
        if self.cache_buffers is not None and self.cache_buffers[0].shape[0] != b:
            raise ValueError(f"the KV cache holds a batch of {self.cache_buffers[0].shape[0]}, got a batch of {b}; "
                             "call reset_cache() before a new batch")
        if pad is not None and self.cache_pad_buffer is None and self.cache_buffers is not None:
            self.cache_pad_buffer = np.zeros((b, self.cache_buffers[0].shape[-2]), dtype=bool)  # earlier: real
        first, end = self.cache_span
        if self.cache_buffers is None or end + num_tokens > self.cache_buffers[0].shape[-2]:
            first, end = self.make_room(new, pad, num_tokens)
        for buffer, t in zip(self.cache_buffers, new):
            buffer.data[..., end:end + num_tokens, :] = t.data
        if self.cache_pad_buffer is not None:
            self.cache_pad_buffer[:, end:end + num_tokens] = False if pad is None else pad
        self.cache_span = (first, end + num_tokens)
        self.ptr_current_pos += num_tokens
        entries = self.cache  # (b, ..., T_k, d) each, views: no copy
        if any(t.requires_grad for t in new):
            entries = tuple(cat([old[..., :-num_tokens, :], t], dim=-2) for old, t in zip(entries, new))
        return entries, self.cache_pad

    def make_room(self, new, pad, num_tokens):
        """Buffers for max(cache_capacity, kept + num_tokens) tokens, the kept tokens moved to their front
        (only a sliding window, which keeps few, ever fills its buffers); returns the kept tokens' span."""
        first, end = self.cache_span
        capacity = max(self.cache_capacity, end - first + num_tokens)
        old, old_pad = self.cache, self.cache_pad
        self.cache_buffers = tuple(zeros(*t.shape[:-2], capacity, t.shape[-1], dtype=t.dtype) for t in new)
        if old is not None:
            for buffer, t in zip(self.cache_buffers, old):
                buffer.data[..., :end - first, :] = t.data
        if old_pad is not None or pad is not None:
            self.cache_pad_buffer = np.zeros((new[0].shape[0], capacity), dtype=bool)
            if old_pad is not None:
                self.cache_pad_buffer[:, :end - first] = old_pad
        return 0, end - first

    def attend(self, queries, keys, values, start, pad):
        """Attention of queries (b, num_heads, num_tokens, head_dim) at absolute positions
        start, ..., start + num_tokens - 1 over keys, values (b, num_heads, T_k, head_dim), the
        last of which sits at the last query's position (where `causal`: the mask needs it);
        padding pad (b, T_k) or None -> (b, num_tokens, d_out).
        """
        b, _, num_tokens, _ = queries.shape
        end = start + num_tokens
        # The mask rows of the queries' absolute positions: with a cache the queries are the last
        # num_tokens of T_k positions, where a square [:num_tokens, :num_tokens] slice would be wrong.
        mask_bool = self.mask.data[start:end, end - keys.shape[2]:end] if self.causal else None  # (num_tokens, T_k)
        blocked = blocked_scores(mask_bool, pad, ndim=4)  # broadcasts to (b, num_heads, num_tokens, T_k)
        dropout_p = self.dropout.p if self.dropout.training else 0.0
        # softmax(queries keys^T / sqrt(head_dim), blocked: -inf), dropout, @ values: one fused op (fused.py)
        context_vec, self._attn_weights = attention(queries, keys, values, blocked, keys.shape[-1] ** -0.5,
                                                    dropout_p)  # (b, num_heads, num_tokens, head_dim), weights
        context_vec = context_vec.transpose(1, 2)  # (b, num_tokens, num_heads, head_dim)
        context_vec = context_vec.reshape(b, num_tokens, self.d_out)  # (b, num_tokens, d_out): heads side by side
        return self.out_proj(context_vec)  # (b, num_tokens, d_out)

    def cache_bytes(self, num_tokens, itemsize=2):
        """Bytes this layer's KV cache holds for one sequence after num_tokens tokens, itemsize bytes a
        number (2: float16 or bfloat16, as published models store it): see kv_cache_bytes."""
        return kv_cache_bytes(num_tokens, self.num_kv_heads, self.head_dim, window=self.window, itemsize=itemsize)


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

    def from_cache(self, cached, end):
        """New: share each key/value head with its group of query heads, [k0, k1] -> [k0, k0, k1, k1]."""
        keys, values = cached  # (b, num_kv_heads, T_k, head_dim) each: the cache keeps them unshared
        keys = keys.repeat_interleave(self.group_size, dim=1)  # (b, num_heads, T_k, head_dim)
        values = values.repeat_interleave(self.group_size, dim=1)  # (b, num_heads, T_k, head_dim)
        return keys, values

    @classmethod
    def from_multihead(cls, mha, num_kv_heads):
        """A GroupedQueryAttention made from a (trained) MultiHeadAttention, as Ainslie et al. (2023,
        "GQA") uptrain multi-head checkpoints: the same W_query and out_proj, and key/value head k
        the mean of the group_size heads it now stands for, k * group_size, ..., (k + 1) * group_size - 1:
        those head_dim-row blocks of W_key and W_value (and of their biases) are averaged. A short
        uptraining (they use 5% of the original steps) recovers most of what the averaging loses.
        The new layer keeps mha's dtype and mode; building it draws from the generator like any layer.
        """
        if type(mha) is not MultiHeadAttention:
            raise TypeError(f"from_multihead converts a MultiHeadAttention, got {type(mha).__name__}")
        gqa = cls(mha.d_in, mha.d_out, mha.context_length, mha.dropout.p, mha.num_heads, num_kv_heads,
                  qkv_bias=mha.W_key.bias is not None, rope=mha.rope is not None)

        def pooled(w):  # (num_heads * head_dim, ...) -> (num_kv_heads * head_dim, ...): the mean of each group
            w = w.reshape(num_kv_heads, gqa.group_size, mha.head_dim, *w.shape[1:])
            return w.mean(axis=1).reshape(num_kv_heads * mha.head_dim, *w.shape[3:])

        params = dict(gqa.named_parameters())
        for name, p in mha.named_parameters():
            params[name].data = pooled(p.data) if name.startswith(("W_key.", "W_value.")) else p.data.copy()
        return gqa.train(mha.training)


# ---------------------------------------------------------------------------------------
# 8. Bidirectional attention (the encoder of "Attention Is All You Need"; BERT)
# ---------------------------------------------------------------------------------------

class BidirectionalAttention(MultiHeadAttention):
    """Multi-head attention without the causal mask: every token sees every other, before and
    after it, as in an encoder (Vaswani et al. 2017; BERT). x (b, num_tokens, d_in) -> (b, num_tokens, d_out).

    New: nothing is blocked but padding (attention_mask), so there is no `mask` buffer; and no
    KV cache, since an earlier token's output changes with every token that comes after it.
    """

    causal = False

    def cache_bytes(self, num_tokens, itemsize=2):
        return 0  # nothing is cached

    def update_cache(self, new, pad):
        raise ValueError(f"{type(self).__name__} has no KV cache: without the causal mask every token sees the "
                         "later ones, so the earlier outputs change with each new token; call it with use_cache=False")


# ---------------------------------------------------------------------------------------
# 9. Cross-attention (the decoder reading the encoder's output)
# ---------------------------------------------------------------------------------------

class CrossAttention(BidirectionalAttention):
    """Attention from one sequence to another: queries from x (b, T, d_in), keys and values from
    `memory` (b, S, d_mem), e.g. the encoder's output read by each decoder layer in "Attention Is
    All You Need" -> (b, T, d_out). Attention weights (b, num_heads, T, S).

    New: W_key and W_value project the memory (d_mem features, default d_in); the padding mask is
    the memory's, memory_mask (b, S), 1 for real tokens, as attention_mask; no causal mask (a
    query may read all of the memory) and no positions (RoPE would relate two unrelated sequences).
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, d_mem=None, qkv_bias=False):
        self.d_mem = d_in if d_mem is None else d_mem
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias)

    def init_kv_projections(self, d_in, qkv_bias):
        super().init_kv_projections(self.d_mem, qkv_bias)  # New: keys and values are made of the memory

    def forward(self, x, memory, memory_mask=None):
        check_input(self, x)
        if memory.ndim != 3 or memory.shape[0] != x.shape[0] or memory.shape[-1] != self.d_mem:
            raise ValueError(f"CrossAttention expects memory (batch={x.shape[0]}, S, d_mem={self.d_mem}) for input "
                             f"{tuple(x.shape)}, got shape {tuple(memory.shape)}")
        pad = padding_mask(memory_mask, memory.shape[:-1], name="memory_mask", of="memory")  # (b, S) or None
        queries = self.split_heads(self.W_query(x), self.num_heads)  # (b, num_heads, T, head_dim)
        keys = self.split_heads(self.W_key(memory), self.num_heads)  # (b, num_heads, S, head_dim)
        values = self.split_heads(self.W_value(memory), self.num_heads)  # (b, num_heads, S, head_dim)
        return self.attend(queries, keys, values, 0, pad)


# ---------------------------------------------------------------------------------------
# 10. Sliding-window attention (Mistral; Gemma 2 and 3 in their local layers)
# ---------------------------------------------------------------------------------------

class SlidingWindowAttention(GroupedQueryAttention):
    """Causal attention to the `window` most recent tokens only: query i sees the keys j with
    i - window < j <= i (itself included), as Mistral and Gemma's local layers. With
    num_kv_heads < num_heads the key/value heads are shared as in GQA (Gemma 3 does both).
    x (b, num_tokens, d_in) -> (b, num_tokens, d_out).

    New: the `mask` buffer is a band, causal_blocked(..., window=window), and the KV cache
    forgets what slid out of the window: between calls it keeps the window - 1 most recent
    tokens, (b, num_kv_heads, <= window - 1, head_dim) each of keys and values, all that the
    next query, which brings its own key, may see. A call of num_tokens tokens reads those
    window - 1 and its own: its first query needs the window - 1 keys before it, whatever the
    chunk size. So the cache stays as large however long the generation (within context_length,
    which the mask and the positions still span). A stack of local layers still sees far: after
    n layers a token has heard of tokens up to n * (window - 1) back.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, window, num_kv_heads=None,
                 qkv_bias=False, rope=False):
        if not isinstance(window, int) or not 1 <= window <= context_length:
            raise ValueError(f"window={window!r} must be an integer between 1 and context_length={context_length}")
        self.window = window  # read by MultiHeadAttention.__init__ to build the band
        super().__init__(d_in, d_out, context_length, dropout, num_heads,
                         num_heads if num_kv_heads is None else num_kv_heads, qkv_bias, rope)

    def update_cache(self, new, pad):
        """New: append as before, then keep only the window - 1 most recent tokens for the next call."""
        entries, pad = super().update_cache(new, pad)  # (b, ..., T_k, d): what this call's queries may see
        first, end = self.cache_span
        self.cache_span = (max(first, end - (self.window - 1)), end)  # (b, ..., <= window - 1, d) kept
        return entries, pad

    @property
    def cache_capacity(self):
        """New: room for the window - 1 kept tokens and a window of new ones. When it is full, make_room
        moves the kept ones to the front: on average one token copied per token decoded."""
        return 2 * self.window


# ---------------------------------------------------------------------------------------
# 11. Multi-head latent attention (DeepSeek-V2)
# ---------------------------------------------------------------------------------------

class MultiHeadLatentAttention(MultiHeadAttention):
    """Multi-head attention whose keys and values are made from one small latent per token
    (DeepSeek-V2, 2024), and the KV cache keeps only that latent. x (b, num_tokens, d_in) -> (b, num_tokens, d_out).

    New: W_kv_down compresses each token to a latent of kv_latent_dim numbers, (b, T, kv_latent_dim),
    shared by every head; W_key_up and W_value_up expand it to each head's key and value,
    (b, num_heads, T, head_dim). The cache holds the latents, `cache_latent` (b, T_k, kv_latent_dim):
    kv_latent_dim numbers per token instead of MHA's 2 * num_heads * head_dim. Without RoPE the
    layer is MHA with W_key = W_key_up @ W_kv_down (rank <= kv_latent_dim), and the
    up-projection can be absorbed: q . (W_key_up c) = (W_key_up^T q) . c, so an inference kernel
    need never expand the cached latents into keys.

    RoPE: a rotation between the up-projection and the dot product depends on the key's position,
    so W_key_up could no longer be absorbed into the queries. DeepSeek-V2 therefore leaves the
    latent keys unrotated and adds a decoupled rotary part: each query head gets an extra
    rotated piece, and all heads share one extra rotated key (64 numbers per token, cached
    beside the 512-number latent). This rung does not: with rope=True it rotates the
    up-projected keys by their absolute positions at every step, which is exact (the layer
    equals MHA with RoPE on the same keys) but forgoes the absorption.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, kv_latent_dim, qkv_bias=False, rope=False):
        if not isinstance(kv_latent_dim, int) or kv_latent_dim < 1:
            raise ValueError(f"kv_latent_dim={kv_latent_dim!r} must be a positive integer")
        self.kv_latent_dim = kv_latent_dim
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias, rope)

    cache_latent = property(lambda self: None if self.cache is None else self.cache[0],
                            doc="the cached latents (b, T_k, kv_latent_dim), or None: there are no cache_k, cache_v")
    cache_k = cache_v = property(lambda self: None, doc="None: latent attention caches latents (cache_latent)")

    def init_kv_projections(self, d_in, qkv_bias):
        """New: a down-projection to the latent, and up-projections from it to every head's keys and values."""
        self.W_kv_down = Linear(d_in, self.kv_latent_dim, bias=qkv_bias)
        self.W_key_up = Linear(self.kv_latent_dim, self.d_out, bias=False)
        self.W_value_up = Linear(self.kv_latent_dim, self.d_out, bias=False)

    def to_cache(self, x, start):
        """New: the cache keeps only the latents, (b, num_tokens, kv_latent_dim): no heads, no positions."""
        return (self.W_kv_down(x),)

    def from_cache(self, cached, end):
        """New: every head's keys and values, up-projected from the cached latents; with RoPE the keys
        are rotated here, by their absolute positions end - T_k, ..., end - 1."""
        (latent,) = cached  # (b, T_k, kv_latent_dim)
        keys = self.split_heads(self.W_key_up(latent), self.num_heads)  # (b, num_heads, T_k, head_dim)
        values = self.split_heads(self.W_value_up(latent), self.num_heads)  # (b, num_heads, T_k, head_dim)
        if self.rope is not None:
            keys = self.rope(keys, end - latent.shape[1])
        return keys, values

    def cache_bytes(self, num_tokens, itemsize=2):
        return kv_cache_bytes(num_tokens, kv_latent_dim=self.kv_latent_dim, itemsize=itemsize)


# ---------------------------------------------------------------------------------------
# Cache memory, and weights to and from PyTorch
# ---------------------------------------------------------------------------------------

def kv_cache_bytes(num_tokens, num_kv_heads=None, head_dim=None, window=None, kv_latent_dim=None, itemsize=2):
    """Bytes one attention layer's KV cache holds for one sequence of num_tokens tokens.

    Per cached token: a key and a value of head_dim numbers for each of num_kv_heads heads,
    2 * num_kv_heads * head_dim numbers (MHA: num_kv_heads = num_heads; GQA; MQA: 1), or one
    latent of kv_latent_dim numbers instead (latent attention). A sliding window caches the
    window - 1 most recent tokens, the others every token. itemsize bytes a number: 2 for the
    float16/bfloat16 of published models (4 for our float32). Each rung's cache_bytes() calls
    this with its sizes, and the tests check it against the arrays a forward pass leaves.
    """
    per_token = 2 * num_kv_heads * head_dim if kv_latent_dim is None else kv_latent_dim
    cached = num_tokens if window is None else min(num_tokens, window - 1)
    return cached * per_token * itemsize


def torch_multihead_state_dict(layer):
    """The weights of a MultiHeadAttention, BidirectionalAttention or CrossAttention under the names of
    torch.nn.MultiheadAttention(d_out, num_heads, kdim=d_mem, vdim=d_mem, batch_first=True), numpy arrays.

    PyTorch stacks W_query, W_key, W_value into in_proj_weight (3 d_out, d_in) when keys and values
    come from d_in features, else keeps q_proj_weight, k_proj_weight, v_proj_weight; in_proj_bias
    is zero for a layer without qkv_bias. Its out_proj is ours. PyTorch's attn_mask and
    key_padding_mask are True = blocked, as our masks inside.
    """
    d_kv = layer.W_key.weight.shape[1] if hasattr(layer, "W_key") else None
    if d_kv is None or layer.d_in != layer.d_out or layer.num_kv_heads != layer.num_heads:
        raise ValueError(f"torch.nn.MultiheadAttention has one key/value head per query head, W_key and W_value, "
                         f"and d_in = d_out; {type(layer).__name__} with d_in={layer.d_in}, d_out={layer.d_out}, "
                         f"num_kv_heads={layer.num_kv_heads} of num_heads={layer.num_heads} does not map to it")
    q, k, v = (getattr(layer, name) for name in ("W_query", "W_key", "W_value"))
    if d_kv == layer.d_in:
        state = {"in_proj_weight": np.concatenate([q.weight.data, k.weight.data, v.weight.data])}  # (3 d_out, d_in)
    else:
        state = {"q_proj_weight": q.weight.data, "k_proj_weight": k.weight.data, "v_proj_weight": v.weight.data}
    biases = [np.zeros(layer.d_out, q.weight.dtype) if m.bias is None else m.bias.data for m in (q, k, v)]
    state["in_proj_bias"] = np.concatenate(biases)  # (3 d_out,)
    state["out_proj.weight"], state["out_proj.bias"] = layer.out_proj.weight.data, layer.out_proj.bias.data
    return {name: a.copy() for name, a in state.items()}


def load_torch_multihead_state_dict(layer, state_dict):
    """The other way: load a torch.nn.MultiheadAttention's state_dict (bias=True) into layer, in place;
    returns layer. Its in_proj_bias must be zero if layer has no qkv_bias (ValueError otherwise)."""
    given = {name: np.asarray(t) for name, t in state_dict.items()}
    if "in_proj_weight" in given:
        weights = np.split(given["in_proj_weight"], 3)  # (d_out, d_in) each: query, key, value
    else:
        weights = [given[f"{p}_proj_weight"] for p in "qkv"]
    qkv_bias = layer.W_query.bias is not None
    if not qkv_bias and np.any(given["in_proj_bias"]):
        raise ValueError(f"the state_dict has a nonzero in_proj_bias, but the {type(layer).__name__} was built "
                         "with qkv_bias=False")
    ours = {"out_proj.weight": given["out_proj.weight"], "out_proj.bias": given["out_proj.bias"]}
    for name, weight, bias in zip(("W_query", "W_key", "W_value"), weights, np.split(given["in_proj_bias"], 3)):
        ours[f"{name}.weight"] = weight
        if qkv_bias:
            ours[f"{name}.bias"] = bias
    layer.load_state_dict(ours, strict=False)  # the mask buffer is ours alone; a wrong shape still raises
    return layer


__all__ = ["simple_self_attention", "SelfAttention_v1", "SelfAttention_v2", "CausalAttention",
           "MultiHeadAttentionWrapper", "MultiHeadAttention", "GroupedQueryAttention", "BidirectionalAttention",
           "CrossAttention", "SlidingWindowAttention", "MultiHeadLatentAttention", "kv_cache_bytes",
           "torch_multihead_state_dict", "load_torch_multihead_state_dict"]
