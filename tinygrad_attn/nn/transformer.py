"""A small decoder-only transformer on the attention ladder: the book's chapter 4 GPTModel,
with a choice of attention (mha, gqa, mqa; sliding-window layers; latent attention) and
positions (learned or RoPE), a KV cache and generate().

    cfg = TransformerConfig(vocab_size=12, context_length=32, num_heads=4, num_kv_heads=2)  # GQA
    cfg = TransformerConfig(12, 32, num_layers=6, window=8, layer_pattern="LLLLLG")  # Gemma 3's 5:1
    model = Transformer(cfg)
    logits = model(idx)                                   # (B, T) int64 -> (B, T, vocab_size)
    out = model.generate(idx, 10, temperature=0.0)        # greedy, with the KV cache

The names are the book's (tok_emb, pos_emb, drop_emb, trf_blocks, final_norm, out_head; in a
block att, ff, norm1, norm2, drop_shortcut), so the state_dict of a PyTorch GPTModel of the
same shape loads with load_state_dict, provided it uses torch.nn.LayerNorm (weight, bias;
the book's own LayerNorm names them scale, shift).
"""

import dataclasses
import math
import numbers
from typing import Optional

import numpy as np

from ..engine import Tensor, default_rng, int64, no_grad
from .attention import (GroupedQueryAttention, MultiHeadAttention, MultiHeadLatentAttention, SlidingWindowAttention,
                        check_fits)
from .layers import Dropout, Embedding, GELU, LayerNorm, Linear
from .masks import padding_mask
from .module import Module, ModuleList, Sequential

POSITION_KINDS = ("learned", "rope")


@dataclasses.dataclass
class TransformerConfig:
    """The hyper-parameters: the book's GPT_CONFIG dict as a dataclass.

    The book's emb_dim, n_layers, n_heads, drop_rate are d_model, num_layers, num_heads, dropout.
    num_kv_heads (default num_heads) says which attention: num_heads is multi-head attention,
    a divisor of it grouped-query, 1 multi-query (`attention` names it). positions: "learned"
    (an Embedding of positions, as GPT-2) or "rope". dataclasses.asdict(cfg) is JSON-able.

    window makes layers local (SlidingWindowAttention: each token sees the `window` most recent,
    itself included), with their num_kv_heads; layer_pattern says which, repeated over the
    layers: "L" local, "G" global (ordinary causal attention), default "L" (every layer local,
    as Mistral 7B); Gemma 2 is "LG", Gemma 3 "LLLLLG". kv_latent_dim makes every layer
    multi-head latent attention (DeepSeek-V2) with a latent of that size.
    """

    vocab_size: int
    context_length: int
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: Optional[int] = None
    positions: str = "learned"
    dropout: float = 0.0
    qkv_bias: bool = False
    window: Optional[int] = None
    layer_pattern: Optional[str] = None
    kv_latent_dim: Optional[int] = None

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.positions not in POSITION_KINDS:
            raise ValueError(f"positions must be one of {POSITION_KINDS}, got {self.positions!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        head_dim = self.d_model // self.num_heads
        if self.positions == "rope" and head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got d_model={self.d_model} / "
                             f"num_heads={self.num_heads} = {head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if not isinstance(self.num_kv_heads, int) or self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads={self.num_kv_heads!r} does not divide num_heads={self.num_heads}")
        if self.window is not None:
            if not (isinstance(self.window, int) and 1 <= self.window <= self.context_length):
                raise ValueError(f"window={self.window!r} must be an integer between 1 and "
                                 f"context_length={self.context_length}")
            self.layer_pattern = "L" if self.layer_pattern is None else self.layer_pattern
        if self.layer_pattern is not None:
            if self.window is None:
                raise ValueError(f"layer_pattern={self.layer_pattern!r} says which layers are local, but there is "
                                 "no window")
            if not isinstance(self.layer_pattern, str) or not self.layer_pattern or set(self.layer_pattern) - set("LG"):
                raise ValueError(f"layer_pattern={self.layer_pattern!r} must be a string of L (local) and "
                                 "G (global) layers")
        if self.kv_latent_dim is not None:
            if not isinstance(self.kv_latent_dim, int) or self.kv_latent_dim < 1:
                raise ValueError(f"kv_latent_dim={self.kv_latent_dim!r} must be a positive integer")
            if self.window is not None or self.num_kv_heads != self.num_heads:
                raise ValueError(f"latent attention (kv_latent_dim={self.kv_latent_dim}) up-projects keys and values "
                                 f"for every head and every earlier token: it takes no window (got {self.window}) and "
                                 f"no num_kv_heads (got {self.num_kv_heads} of num_heads={self.num_heads})")

    @property
    def attention(self):
        """'mha', 'gqa' or 'mqa', from num_kv_heads; 'mla' with a kv_latent_dim."""
        if self.kv_latent_dim is not None:
            return "mla"
        return "mha" if self.num_kv_heads == self.num_heads else "mqa" if self.num_kv_heads == 1 else "gqa"

    def layer_window(self, i):
        """The window of layer i (0-based): `window` for a local layer of layer_pattern, None for a global one."""
        local = self.window is not None and self.layer_pattern[i % len(self.layer_pattern)] == "L"
        return self.window if local else None


def position_ids(pad, num_tokens, num_real=0):
    """The learned-position index of each token: the number of real tokens before it.

    pad (b, num_tokens) True at padding, or None; num_real, the real tokens already in the
    cache, an int or (b, 1). Returns int64 (num_tokens,) or (b, num_tokens). Counting real
    tokens only (as Hugging Face does) gives a left-padded row the positions its sequence has
    alone; padding slots get 0, and no real token attends to them.
    """
    if pad is None:
        return num_real + np.arange(num_tokens)  # (num_tokens,) or (b, num_tokens)
    return np.maximum(num_real + np.cumsum(~pad, axis=1) - 1, 0)  # (b, num_tokens)


class FeedForward(Module):
    """Position-wise MLP (the book's FeedForward): Linear(d_model, 4 d_model), GELU, Linear back."""

    def __init__(self, cfg):
        self.layers = Sequential(Linear(cfg.d_model, 4 * cfg.d_model), GELU(), Linear(4 * cfg.d_model, cfg.d_model))

    def forward(self, x):
        return self.layers(x)  # (b, num_tokens, d_model)


class TransformerBlock(Module):
    """Pre-LayerNorm block (the book's TransformerBlock): x + att(norm1(x)), then x + ff(norm2(x)),
    with dropout on each branch before it is added back. x (b, num_tokens, d_model), same shape out.
    window: this layer's sliding window (cfg.layer_window(i)), None for attention to every earlier token.
    """

    def __init__(self, cfg, window=None):
        sizes = (cfg.d_model, cfg.d_model, cfg.context_length, cfg.dropout, cfg.num_heads)
        options = dict(qkv_bias=cfg.qkv_bias, rope=cfg.positions == "rope")
        if cfg.kv_latent_dim is not None:
            self.att = MultiHeadLatentAttention(*sizes, cfg.kv_latent_dim, **options)
        elif window is not None:
            self.att = SlidingWindowAttention(*sizes, window, cfg.num_kv_heads, **options)
        elif cfg.num_kv_heads == cfg.num_heads:
            self.att = MultiHeadAttention(*sizes, **options)
        else:  # grouped-query, or multi-query with num_kv_heads = 1
            self.att = GroupedQueryAttention(*sizes, cfg.num_kv_heads, **options)
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg.d_model)
        self.norm2 = LayerNorm(cfg.d_model)
        self.drop_shortcut = Dropout(cfg.dropout)

    def forward(self, x, attention_mask=None, use_cache=False):
        shortcut = x
        x = self.norm1(x)
        x = self.att(x, attention_mask, use_cache)
        x = self.drop_shortcut(x)
        x = x + shortcut
        shortcut = x
        x = self.norm2(x)
        x = self.ff(x)
        x = self.drop_shortcut(x)
        return x + shortcut


class Transformer(Module):
    """Decoder-only transformer (the book's GPTModel): idx (b, num_tokens) int64 -> logits (b, num_tokens, vocab_size).

    Token embedding (+ learned position embedding, unless positions="rope", which rotates
    inside attention instead), dropout, num_layers TransformerBlocks, final LayerNorm, and
    out_head, a Linear to the vocabulary without bias.

    attention_mask (b, num_tokens), 1 real / 0 padding, covers the tokens of this call (with
    the cache, the cache remembers the earlier ones). Learned positions count real tokens
    only (position = number of real tokens before it, as Hugging Face does), and RoPE depends
    on relative positions only, so left padding does not change the real tokens' outputs.

    KV cache: model(idx, use_cache=True) appends to every layer's cache; `current_pos` (the
    layers' own counter) says how many tokens it holds; reset_cache() empties it. The attention weights of the last
    call are in block.att.last_attn_weights for block in trf_blocks (b, num_heads, T_q, T_k).
    """

    def __init__(self, cfg):
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(f"Transformer needs a TransformerConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.tok_emb = Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = Embedding(cfg.context_length, cfg.d_model) if cfg.positions == "learned" else None
        self.drop_emb = Dropout(cfg.dropout)
        self.trf_blocks = ModuleList([TransformerBlock(cfg, cfg.layer_window(i)) for i in range(cfg.num_layers)])
        self.final_norm = LayerNorm(cfg.d_model)
        self.out_head = Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_cache()

    @property
    def blocks(self):
        """The TransformerBlocks: another name for trf_blocks."""
        return self.trf_blocks

    @property
    def current_pos(self):
        """Tokens in the KV cache: every layer counts the same."""
        return self.trf_blocks[0].att.ptr_current_pos

    def reset_cache(self):
        """Empty the KV cache of every layer."""
        self.num_real = 0  # real (not padding) tokens in the cache: an int, or (b, 1) once padding was seen
        for block in self.trf_blocks:
            block.att.reset_cache()

    def forward(self, idx, attention_mask=None, use_cache=False):
        ids = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        if ids.ndim != 2:
            raise ValueError(f"Transformer expects token ids (batch, num_tokens), got shape {ids.shape}")
        b, num_tokens = ids.shape
        check_fits(type(self).__name__, num_tokens, self.current_pos if use_cache else 0, self.cfg.context_length)
        pad = padding_mask(attention_mask, (b, num_tokens))
        num_real = self.num_real if use_cache else 0
        x = self.tok_emb(ids)  # (b, num_tokens, d_model)
        if self.pos_emb is not None:
            x = x + self.pos_emb(position_ids(pad, num_tokens, num_real))  # (b, num_tokens, d_model)
        x = self.drop_emb(x)
        for block in self.trf_blocks:
            x = block(x, attention_mask, use_cache)
        x = self.final_norm(x)
        if use_cache:
            self.num_real = num_real + (num_tokens if pad is None else (~pad).sum(axis=1, keepdims=True))
        return self.out_head(x)  # (b, num_tokens, vocab_size)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True,
                 attention_mask=None):
        """Append max_new_tokens tokens to idx (b, num_tokens); returns int64 (b, num_tokens + max_new_tokens).

        The tokens stream() yields, joined to the prompt; the arguments are stream()'s.
        """
        prompt = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        new = list(self.stream(prompt, max_new_tokens, temperature, top_k, top_p, use_cache, attention_mask))
        return Tensor(np.concatenate([prompt, *new], axis=1), dtype=int64)

    def stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True,
               attention_mask=None):
        """Yield max_new_tokens new tokens, int64 (b, 1) each, as they are drawn after the prompt idx (b, num_tokens).

        Each new token is drawn by sample_next_token from the logits of the last position, with
        tinygrad_attn's generator (manual_seed makes it repeatable): temperature=0.0 takes the
        argmax (greedy), top_k keeps the k most likely tokens, top_p the smallest set whose
        probability reaches p (nucleus sampling). attention_mask (b, num_tokens) marks the
        prompt's (left) padding; new tokens are real. With use_cache the prompt is prefilled once
        and each step feeds only the new token, so the prompt plus max_new_tokens must fit in
        context_length (else ValueError); without it every step reruns the model on the last
        context_length tokens (the book's sliding window). Runs in eval mode under no_grad from
        an empty cache; when it ends, or is closed early, it restores the training mode and
        empties the cache again.
        """
        tokens = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if tokens.ndim != 2 or tokens.shape[1] < 1:
            raise ValueError(f"generate expects a prompt of token ids (batch, num_tokens >= 1), "
                             f"got shape {tokens.shape}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        check_sampling(temperature, top_k, top_p, self.cfg.vocab_size)
        limit = self.cfg.context_length
        if use_cache and tokens.shape[1] + max_new_tokens > limit:
            raise ValueError(f"a prompt of {tokens.shape[1]} tokens plus max_new_tokens={max_new_tokens} exceeds "
                             f"context_length={limit}, the size of the KV cache; use_cache=False slides a window")
        pad = padding_mask(attention_mask, tokens.shape)
        return self._stream(tokens, max_new_tokens, temperature, top_k, top_p, use_cache, pad)

    def _stream(self, tokens, max_new_tokens, temperature, top_k, top_p, use_cache, pad):
        """The generator behind stream(), which checked the arguments before the first token is asked for."""
        limit = self.cfg.context_length
        real = None if pad is None else (~pad).astype(int64)  # (b, T) 1/0, grows with the tokens
        was_training = self.training
        self.eval()
        self.reset_cache()
        try:
            with no_grad():
                step_ids, step_mask = tokens, real  # with the cache: the prompt, then each new token alone
                for _ in range(max_new_tokens):
                    if not use_cache:
                        step_ids, step_mask = tokens[:, -limit:], None if real is None else real[:, -limit:]
                    logits = self(step_ids, step_mask, use_cache)  # (b, step tokens, vocab_size)
                    next_token = sample_next_token(logits.data[:, -1, :], temperature, top_k, top_p)  # (b, 1)
                    tokens = np.concatenate([tokens, next_token], axis=1)
                    real = None if real is None else np.concatenate([real, np.ones_like(next_token)], axis=1)
                    step_ids, step_mask = next_token, None
                    yield next_token
        finally:
            self.reset_cache()
            self.train(was_training)


def convert_to_grouped_query(model, num_kv_heads):
    """Make a trained multi-head Transformer grouped-query, in place: every layer's attention becomes
    GroupedQueryAttention.from_multihead(att, num_kv_heads) (key/value heads mean-pooled per group)
    and model.cfg.num_kv_heads says so. Returns the model; its old parameters are gone, so make a new
    optimizer to uptrain it.
    """
    cfg = dataclasses.replace(model.cfg, num_kv_heads=num_kv_heads)  # checks that it divides num_heads
    converted = [GroupedQueryAttention.from_multihead(block.att, num_kv_heads) for block in model.trf_blocks]
    for block, att in zip(model.trf_blocks, converted):  # all or nothing: from_multihead may refuse a layer
        block.att = att
    model.cfg = cfg
    return model


def check_sampling(temperature, top_k, top_p, vocab_size):
    """ValueError naming the value unless temperature >= 0 is finite, top_k an int in [1, vocab_size]
    and top_p a number in (0, 1] (each may be None but the temperature)."""
    if not (isinstance(temperature, numbers.Real) and 0 <= temperature < math.inf):  # NaN fails both
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and not (isinstance(top_k, numbers.Integral) and 1 <= top_k <= vocab_size):
        raise ValueError(f"top_k must be an integer in [1, vocab_size={vocab_size}], got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, numbers.Real) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None):
    """One token per row from logits (b, vocab_size), a numpy array; returns int64 (b, 1).

    temperature 0 is the argmax. Otherwise keep the top_k largest logits (ties with the k-th
    kept too, as the book's torch.where(logits < min_val, -inf, logits)), divide by the
    temperature, softmax, keep (top_p) the most likely tokens until their probability reaches
    top_p (the one that crosses it included, so at least one is kept), and draw by inverting
    the cumulative distribution with one uniform number per row from tinygrad_attn's generator.
    """
    if temperature == 0:
        return logits.argmax(axis=-1, keepdims=True).astype(int64)
    logits = logits.astype(np.float64)
    if top_k is not None:
        kth = np.partition(logits, -top_k, axis=-1)[:, [-top_k]]  # (b, 1): the k-th largest
        logits = np.where(logits < kth, -np.inf, logits)
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max(axis=-1, keepdims=True))  # unnormalised: the threshold below scales instead
    if top_p is not None:
        order = np.argsort(-probs, axis=-1, kind="stable")  # (b, vocab_size): most likely first
        ranked = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(ranked, axis=-1) - ranked  # probability of the tokens ranked above each
        drop = before >= top_p * ranked.sum(axis=-1, keepdims=True)  # the nucleus is reached without it
        np.put_along_axis(probs, order, np.where(drop, 0.0, ranked), axis=-1)
    cdf = np.cumsum(probs, axis=-1)  # (b, vocab_size)
    threshold = default_rng().random((len(cdf), 1)) * cdf[:, -1:]  # uniform in [0, total)
    return (cdf <= threshold).sum(axis=-1, keepdims=True).astype(int64)  # first index whose cdf exceeds it


__all__ = ["TransformerConfig", "Transformer", "TransformerBlock", "FeedForward", "position_ids",
           "convert_to_grouped_query", "check_sampling", "sample_next_token"]
