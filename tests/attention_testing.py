"""Helpers shared by test_attention.py, test_kv_cache.py and test_transformer.py."""

import numpy as np

from tinygrad_attn import Tensor, gradcheck


def kv_heads_of(kind, num_kv_heads=None, num_heads=4):
    """The num_kv_heads an attention kind means: mha one per query head, mqa one, gqa the number given."""
    return {"mha": num_heads, "mqa": 1}.get(kind, num_kv_heads)


def to_float64(module):
    """The module cast to float64 in place (finite differences need it): Module.double(), as in PyTorch."""
    return module.double()


def randn(*shape, seed=0, requires_grad=False):
    return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=requires_grad, dtype=np.float64)


def gradcheck_module(module, fn, *inputs):
    """Finite-difference check of fn(*inputs) against every parameter of module and the inputs that require grad."""
    n = len(inputs)
    return gradcheck(lambda *args: fn(*args[:n]), list(inputs) + module.parameters())


def left_padded(rows, width, pad_value=0.0):
    """Stack sequences (T_i, ...) numpy arrays into (B, width, ...) with left padding, and the (B, width) 1/0 mask."""
    batch = np.full((len(rows), width) + rows[0].shape[1:], pad_value, dtype=rows[0].dtype)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        batch[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    return batch, mask


def torch_attention_twin(torch, d_in, d_out, context_length, num_heads, num_kv_heads, qkv_bias=False, window=None,
                         causal=True):
    """A PyTorch module with the state_dict names of MultiHeadAttention / GroupedQueryAttention (or, with a
    window, SlidingWindowAttention; causal=False, BidirectionalAttention), computing with
    F.scaled_dot_product_attention (enable_gqa when num_kv_heads < num_heads), in float64."""
    head_dim = d_out // num_heads

    class TorchAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W_query = torch.nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_key = torch.nn.Linear(d_in, num_kv_heads * head_dim, bias=qkv_bias)
            self.W_value = torch.nn.Linear(d_in, num_kv_heads * head_dim, bias=qkv_bias)
            self.out_proj = torch.nn.Linear(d_out, d_out)
            if causal:  # the book's float buffer: 1 above the diagonal (and, with a window, below the band)
                blocked = torch.triu(torch.ones(context_length, context_length), diagonal=1)
                if window is not None:
                    blocked += torch.tril(torch.ones(context_length, context_length), diagonal=-window)
                self.register_buffer("mask", blocked)

        def forward(self, x, attention_mask=None):
            b, T, _ = x.shape
            q = self.W_query(x).view(b, T, num_heads, head_dim).transpose(1, 2)  # (b, H, T, hd)
            k = self.W_key(x).view(b, T, num_kv_heads, head_dim).transpose(1, 2)  # (b, H_kv, T, hd)
            v = self.W_value(x).view(b, T, num_kv_heads, head_dim).transpose(1, 2)  # (b, H_kv, T, hd)
            allowed = ~self.mask[:T, :T].bool() if causal else torch.ones(T, T, dtype=torch.bool)  # True = may attend
            if attention_mask is not None:
                allowed = allowed & attention_mask.bool()[:, None, None, :]  # (b, 1, T, T)
            ctx = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                                                   enable_gqa=num_kv_heads != num_heads)
            return self.out_proj(ctx.transpose(1, 2).reshape(b, T, d_out))  # (b, T, d_out)

    return TorchAttention().double()


def torch_latent_twin(torch, d_in, d_out, num_heads, kv_latent_dim, qkv_bias=False):
    """MultiHeadLatentAttention (without RoPE) in PyTorch, with its state_dict names, float64."""
    head_dim = d_out // num_heads

    class TorchLatentAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W_query = torch.nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_kv_down = torch.nn.Linear(d_in, kv_latent_dim, bias=qkv_bias)
            self.W_key_up = torch.nn.Linear(kv_latent_dim, d_out, bias=False)
            self.W_value_up = torch.nn.Linear(kv_latent_dim, d_out, bias=False)
            self.out_proj = torch.nn.Linear(d_out, d_out)

        def forward(self, x):
            b, T, _ = x.shape
            heads = lambda t: t.view(b, T, num_heads, head_dim).transpose(1, 2)  # noqa: E731  (b, H, T, hd)
            latent = self.W_kv_down(x)  # (b, T, kv_latent_dim)
            ctx = torch.nn.functional.scaled_dot_product_attention(
                heads(self.W_query(x)), heads(self.W_key_up(latent)), heads(self.W_value_up(latent)), is_causal=True)
            return self.out_proj(ctx.transpose(1, 2).reshape(b, T, d_out))  # (b, T, d_out)

    return TorchLatentAttention().double()


def torch_gpt_twin(torch, cfg):
    """The book's GPTModel in PyTorch (learned positions, torch.nn.LayerNorm names), float64."""
    nn = torch.nn

    class FeedForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(approximate="tanh"),
                                        nn.Linear(4 * cfg.d_model, cfg.d_model))

        def forward(self, x):
            return self.layers(x)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = torch_attention_twin(torch, cfg.d_model, cfg.d_model, cfg.context_length, cfg.num_heads,
                                            cfg.num_kv_heads, cfg.qkv_bias)
            self.ff = FeedForward()
            self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)

        def forward(self, x):
            x = x + self.att(self.norm1(x))
            return x + self.ff(self.norm2(x))

    class GPTModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model)
            self.trf_blocks = nn.ModuleList([Block() for _ in range(cfg.num_layers)])
            self.final_norm = nn.LayerNorm(cfg.d_model)
            self.out_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

        def forward(self, idx):
            x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1]))
            for block in self.trf_blocks:
                x = block(x)
            return self.out_head(self.final_norm(x))

    return GPTModel().double()
