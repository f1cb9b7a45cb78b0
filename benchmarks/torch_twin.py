"""The benchmark's model in PyTorch eager: the twin that tinygrad_attn races in bench.py.

The module and parameter names are those of tinygrad_attn.nn.transformer.Transformer (the
book's GPTModel: tok_emb, pos_emb, trf_blocks.{i}.att.W_query, ..., final_norm, out_head),
so our state_dict loads with load_state_dict, one name to one tensor. Attention is written
by hand (matmul, masked_fill, softmax) as ours is. Dropout is left out: the
benchmark trains with dropout 0. bench.py sets the number of threads (torch.set_num_threads).

stream() decodes greedily with a KV cache like ours: keys and values preallocated for
context_length tokens and written in place, each step attending to the filled part.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .autograd_side import AutogradSide

class Attention(nn.Module):
    """Causal multi-head attention with num_kv_heads key/value heads (num_heads: mha; fewer: gqa).

    x (b, num_tokens, d_model) -> (b, num_tokens, d_model). Key/value head k serves query heads
    k * group, ..., (k + 1) * group - 1 (repeat_interleave order), as in tinygrad_attn.
    """

    def __init__(self, cfg):
        super().__init__()
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim = cfg.d_model // cfg.num_heads
        self.W_query = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(cfg.d_model, cfg.num_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(cfg.d_model, cfg.num_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.register_buffer("mask", torch.triu(torch.ones(cfg.context_length, cfg.context_length, dtype=torch.bool),
                                                diagonal=1))  # True above the diagonal: the future

    def forward(self, x, cache=None, start=0):
        """cache: (keys, values) buffers (b, H_kv, context_length, hd) holding `start` tokens, or None."""
        b, num_tokens, d_model = x.shape
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)  # (b, H, T, hd)
        keys = self.W_key(x).view(b, num_tokens, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (b, H_kv, T, hd)
        values = self.W_value(x).view(b, num_tokens, self.num_kv_heads, self.head_dim).transpose(1, 2)
        end = start + num_tokens
        if cache is not None:  # written in place, then attend to every cached token
            cache[0][:, :, start:end] = keys
            cache[1][:, :, start:end] = values
            keys, values = cache[0][:, :, :end], cache[1][:, :, :end]  # (b, H_kv, end, hd)
        group = self.num_heads // self.num_kv_heads
        if group > 1:
            keys = keys.repeat_interleave(group, dim=1)  # (b, H, T_k, hd)
            values = values.repeat_interleave(group, dim=1)
        scores = queries @ keys.transpose(2, 3)  # (b, H, T, T_k)
        scores = scores.masked_fill(self.mask[start:end, :end], float("-inf"))  # the queries' rows
        weights = torch.softmax(scores / self.head_dim ** 0.5, dim=-1)
        context = weights @ values  # (b, H, T, hd)
        context = context.transpose(1, 2).reshape(b, num_tokens, d_model)  # (b, T, d_model)
        return self.out_proj(context)


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(approximate="tanh"),
                                    nn.Linear(4 * cfg.d_model, cfg.d_model))

    def forward(self, x):
        return self.layers(x)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm: x + att(norm1(x)), then x + ff(norm2(x))."""

    def __init__(self, cfg):
        super().__init__()
        self.att = Attention(cfg)
        self.ff = FeedForward(cfg)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)

    def forward(self, x, cache=None, start=0):
        x = x + self.att(self.norm1(x), cache, start)
        return x + self.ff(self.norm2(x))


class Transformer(nn.Module):
    """idx (b, num_tokens) int64 -> logits (b, num_tokens, vocab_size); learned positions only."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.positions != "learned" or cfg.dropout:
            raise ValueError(f"the twin has learned positions and no dropout, got positions={cfg.positions!r}, "
                             f"dropout={cfg.dropout}")
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model)
        self.trf_blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.num_layers)])
        self.final_norm = nn.LayerNorm(cfg.d_model)
        self.out_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, idx, caches=None, start=0):
        """caches: one (keys, values) pair of buffers per block, holding `start` tokens, or None."""
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(start, start + idx.shape[1]))  # (b, num_tokens, d_model)
        for block, cache in zip(self.trf_blocks, caches or [None] * len(self.trf_blocks)):
            x = block(x, cache, start)
        return self.out_head(self.final_norm(x))  # (b, num_tokens, vocab_size)

    def stream(self, idx, max_new_tokens):
        """Greedy decoding with the KV cache: yields max_new_tokens tokens (b, 1) after idx (b, T) int64."""
        b, context_length = idx.shape[0], self.pos_emb.num_embeddings
        att = self.trf_blocks[0].att
        shape = (b, att.num_kv_heads, context_length, att.head_dim)
        caches = [(torch.zeros(shape), torch.zeros(shape)) for _ in self.trf_blocks]
        step, start = idx, 0
        for _ in range(max_new_tokens):
            with torch.inference_mode():
                logits = self(step, caches, start)
            start += step.shape[1]
            step = logits[:, -1].argmax(dim=-1, keepdim=True)  # (b, 1)
            yield step


class TorchSide(AutogradSide):
    """A side of the race: the twin, torch.optim.Adam and F.cross_entropy."""

    def __init__(self, model_cfg, state, lr):
        self.model = Transformer(model_cfg)
        self.model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        self.named = dict(self.model.named_parameters())
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)

    def prepare(self, idx, targets):
        return torch.from_numpy(idx), torch.from_numpy(targets)

    def _loss(self, idx, targets):
        logits = self.model(idx)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
