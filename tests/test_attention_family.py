"""The rest of the attention family: bidirectional and cross-attention (and a tiny encoder-decoder
built from them), sliding-window and latent attention, MHA to GQA by mean-pooling; each with
finite-difference gradients, PyTorch parity and its errors. The KV-cache equalities are in
test_kv_cache.py, the cache memory in test_kv_cache_memory.py."""

import io
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_attn import Tensor, gradcheck, manual_seed, viz
from tinygrad_attn.nn import (BidirectionalAttention, CrossAttention, Embedding, GroupedQueryAttention, LayerNorm,
                              Linear, Module, ModuleList, MultiHeadAttention, MultiHeadLatentAttention,
                              SlidingWindowAttention, Transformer, TransformerConfig)
from tinygrad_attn.nn import functional as F
from tinygrad_attn.nn.attention import load_torch_multihead_state_dict, torch_multihead_state_dict
from tinygrad_attn.nn.masks import causal_blocked
from tinygrad_attn.nn.transformer import FeedForward, convert_to_grouped_query
from tinygrad_attn.runs import load_run

from attention_testing import (gradcheck_module, left_padded, randn, to_float64, torch_attention_twin,
                               torch_latent_twin)
from run_testing import SMALL


def build(cls, *args, seed=0, **kwargs):
    manual_seed(seed)
    return to_float64(cls(*args, **kwargs))


# ---------------------------------------------------------------------------------------
# 8. Bidirectional attention
# ---------------------------------------------------------------------------------------

def test_bidirectional_attention_sees_the_future_and_has_no_mask_buffer():
    layer = build(BidirectionalAttention, 4, 4, 8, 0.0, num_heads=2)
    assert "mask" not in layer.state_dict()
    x = randn(2, 5, 4)
    changed = x.numpy().copy()
    changed[:, 4:] += 1.0  # only the last token changes
    out, out_changed = layer(x).numpy(), layer(Tensor(changed, dtype=np.float64)).numpy()
    assert not np.allclose(out[:, 0], out_changed[:, 0])  # ... and the first token's output with it
    w = layer.last_attn_weights.numpy()
    assert (w > 0).all() and w.shape == (2, 2, 5, 5)


def test_bidirectional_attention_equals_mha_without_its_mask():
    mha = build(MultiHeadAttention, 4, 4, 8, 0.0, num_heads=2, qkv_bias=True)
    bi = build(BidirectionalAttention, 4, 4, 8, 0.0, num_heads=2, qkv_bias=True)
    x = randn(2, 5, 4)
    mha.mask.data = np.zeros_like(mha.mask.data)  # nothing blocked
    np.testing.assert_array_equal(bi(x).numpy(), mha(x).numpy())


def test_bidirectional_padding_is_invisible_and_there_is_no_cache():
    layer = build(BidirectionalAttention, 4, 4, 8, 0.0, num_heads=2, rope=True)
    rng = np.random.default_rng(3)
    seqs = [rng.standard_normal((5, 4)), rng.standard_normal((2, 4))]
    batch, mask = left_padded(seqs, 5, pad_value=9.0)
    out = layer(Tensor(batch, dtype=np.float64), attention_mask=mask).numpy()
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(out[i, 5 - len(seq):], layer(Tensor(seq[None], dtype=np.float64)).numpy()[0],
                                   rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"BidirectionalAttention has no KV cache: .* use_cache=False"):
        layer(randn(1, 3, 4), use_cache=True)


def test_bidirectional_gradients():
    layer = build(BidirectionalAttention, 4, 4, 4, 0.0, num_heads=2, qkv_bias=True, rope=True)
    x = randn(2, 3, 4, requires_grad=True)
    assert gradcheck_module(layer, lambda x: layer(x, attention_mask=[[0, 1, 1], [1, 1, 1]]), x)


# ---------------------------------------------------------------------------------------
# 9. Cross-attention
# ---------------------------------------------------------------------------------------

def test_cross_attention_reads_the_memory_and_ignores_its_padding():
    layer = build(CrossAttention, 4, 6, 8, 0.0, num_heads=2, d_mem=3)
    assert layer.W_key.weight.shape == layer.W_value.weight.shape == (6, 3)  # (d_out, d_mem)
    x, memory = randn(2, 4, 4), randn(2, 5, 3, seed=1)
    out = layer(x, memory)
    assert out.shape == (2, 4, 6) and layer.last_attn_weights.shape == (2, 2, 4, 5)  # (b, heads, T, S)
    assert (layer.last_attn_weights.numpy() > 0).all()  # no causal mask: every query reads all the memory
    padded = np.concatenate([np.full((2, 2, 3), 7.0), memory.numpy()], axis=1)  # two padding slots in front
    memory_mask = np.array([[0, 0, 1, 1, 1, 1, 1]] * 2)
    np.testing.assert_allclose(layer(x, Tensor(padded, dtype=np.float64), memory_mask).numpy(), out.numpy(),
                               rtol=1e-10, atol=1e-12)


def test_cross_attention_gradients_reach_the_memory():
    layer = build(CrossAttention, 4, 4, 4, 0.0, num_heads=2, d_mem=3, qkv_bias=True)
    x, memory = randn(2, 3, 4, requires_grad=True), randn(2, 4, 3, seed=1, requires_grad=True)
    assert gradcheck_module(layer, lambda x, m: layer(x, m, memory_mask=[[0, 1, 1, 1], [1, 1, 1, 1]]), x, memory)


def test_cross_attention_errors_name_the_numbers():
    layer = build(CrossAttention, 4, 4, 8, 0.0, num_heads=2, d_mem=3)
    x = randn(2, 4, 4)
    with pytest.raises(ValueError, match=r"memory \(batch=2, S, d_mem=3\) for input \(2, 4, 4\), got shape \(2, 5, 4\)"):
        layer(x, randn(2, 5, 4))  # the memory's width
    with pytest.raises(ValueError, match=r"memory \(batch=2, S, d_mem=3\) .* got shape \(3, 5, 3\)"):
        layer(x, randn(3, 5, 3))  # its batch
    with pytest.raises(ValueError, match=r"got shape \(5, 3\)"):
        layer(x, randn(5, 3))
    with pytest.raises(ValueError, match=r"memory_mask must have the memory's shape without its last dim, \(2, 5\), "
                                         r"got \(2, 4\)"):
        layer(x, randn(2, 5, 3), memory_mask=np.ones((2, 4)))  # the decoder's padding mask, not the memory's
    with pytest.raises(ValueError, match=r"memory_mask holds 1 for real tokens and 0 for padding, got the values \[3\]"):
        layer(x, randn(2, 5, 3), memory_mask=np.full((2, 5), 3))
    with pytest.raises(ValueError, match=r"9 tokens exceed context_length=8"):
        layer(randn(2, 9, 4), randn(2, 5, 3))


class EncoderDecoder(Module):
    """The Transformer of "Attention Is All You Need" at toy size, pre-LayerNorm: an encoder of
    bidirectional self-attention, a decoder of causal self-attention and cross-attention to the
    encoder's output, learned positions. src (b, S), tgt (b, T) int64 -> logits (b, T, vocab)."""

    def __init__(self, vocab, d, context_length, num_heads, num_layers=2):
        cfg = TransformerConfig(vocab, context_length, d_model=d, num_heads=num_heads)  # for FeedForward's sizes
        sizes = (d, d, context_length, 0.0, num_heads)
        self.src_emb, self.tgt_emb, self.pos_emb = Embedding(vocab, d), Embedding(vocab, d), Embedding(context_length, d)
        self.encoder = ModuleList([ModuleList([LayerNorm(d), BidirectionalAttention(*sizes), LayerNorm(d),
                                               FeedForward(cfg)]) for _ in range(num_layers)])
        self.decoder = ModuleList([ModuleList([LayerNorm(d), MultiHeadAttention(*sizes), LayerNorm(d),
                                               CrossAttention(*sizes), LayerNorm(d), FeedForward(cfg)])
                                   for _ in range(num_layers)])
        self.out_head = Linear(d, vocab, bias=False)

    def forward(self, src, tgt, src_mask=None):
        memory = self.src_emb(src) + self.pos_emb(np.arange(src.shape[1]))  # (b, S, d)
        for norm1, att, norm2, ff in self.encoder:
            memory = memory + att(norm1(memory), attention_mask=src_mask)
            memory = memory + ff(norm2(memory))
        x = self.tgt_emb(tgt) + self.pos_emb(np.arange(tgt.shape[1]))  # (b, T, d)
        for norm1, att, norm2, cross, norm3, ff in self.decoder:
            x = x + att(norm1(x))
            x = x + cross(norm2(x), memory, memory_mask=src_mask)
            x = x + ff(norm3(x))
        return self.out_head(x)  # (b, T, vocab)


def test_a_tiny_encoder_decoder_trains_forward_and_backward():
    model = build(EncoderDecoder, 7, 4, 6, 2, num_layers=1)
    src, tgt = Tensor(np.array([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])), Tensor(np.array([[1, 5, 4], [2, 6, 6]]))
    src_mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding in the source
    logits = model(src, tgt, src_mask)
    assert logits.shape == (2, 3, 7)
    loss = F.cross_entropy(logits.reshape(-1, 7), np.array([5, 4, 3, 6, 6, 1]))
    loss.backward()
    assert all(p.grad is not None and np.abs(p.grad).sum() > 0 for p in model.parameters())
    model.zero_grad()
    # by finite differences, the gradient that reaches the encoder through the decoder's cross-attention
    encoder_params = [model.src_emb.weight] + model.encoder[0][1].parameters() + model.decoder[0][3].parameters()
    assert gradcheck(lambda *_: model(src, tgt, src_mask), encoder_params)
    # the decoder is causal, the encoder is not; the source's padding changes nothing
    changed = tgt.numpy().copy()
    changed[:, 2] = 0
    np.testing.assert_array_equal(model(src, Tensor(changed), src_mask).numpy()[:, :2], logits.numpy()[:, :2])
    other_padding = src.numpy().copy()
    other_padding[0, :2] = 6
    np.testing.assert_allclose(model(Tensor(other_padding), tgt, src_mask).numpy(), logits.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------
# Weights to and from torch.nn.MultiheadAttention
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["causal", "bidirectional", "cross", "cross_same_width"])
@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_weights_map_to_and_from_torch_multihead_attention(torch, kind, direction):
    d, heads, T, S = 6, 3, 4, 5
    d_mem = {"cross": 4, "cross_same_width": d}.get(kind)
    cls = {"causal": MultiHeadAttention, "bidirectional": BidirectionalAttention}.get(kind, CrossAttention)
    def make():
        return build(cls, d, d, 8, 0.0, heads, **({} if d_mem is None else {"d_mem": d_mem}), qkv_bias=True)

    ours = make()
    torch.manual_seed(0)
    twin = torch.nn.MultiheadAttention(d, heads, kdim=d_mem, vdim=d_mem, batch_first=True).double()
    if direction == "ours_to_torch":
        twin.load_state_dict({k: torch.tensor(v) for k, v in torch_multihead_state_dict(ours).items()})
    else:
        load_torch_multihead_state_dict(ours, twin.state_dict())
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((2, T, d))
    memory_np = None if d_mem is None else rng.standard_normal((2, S, d_mem))
    pad_len = S if memory_np is not None else T
    mask_np = np.ones((2, pad_len), dtype=np.int64)
    mask_np[0, 0] = 0  # a padding key, first in its row
    upstream = rng.standard_normal((2, T, d))

    x = Tensor(x_np.copy(), requires_grad=True, dtype=np.float64)
    if memory_np is None:
        out = ours(x, attention_mask=mask_np[:, :T] if kind == "bidirectional" else None)
    else:
        out = ours(x, Tensor(memory_np, dtype=np.float64), memory_mask=mask_np)
    out.backward(upstream)
    x_t = torch.tensor(x_np, requires_grad=True)
    attn_mask = torch.tensor(causal_blocked(T, T)) if kind == "causal" else None  # PyTorch's bool: True = blocked
    key_padding = None if kind == "causal" else torch.tensor(mask_np == 0)
    kv = x_t if memory_np is None else torch.tensor(memory_np)  # self-attention: query = key = value
    out_t = twin(x_t, kv, kv, attn_mask=attn_mask, key_padding_mask=key_padding, need_weights=False)[0]
    out_t.backward(torch.tensor(upstream))
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    # torch's gradients under our names, through the mapping whose outputs were just checked
    grads = load_torch_multihead_state_dict(make(), {name: p.grad for name, p in twin.named_parameters()})
    for name, p in grads.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters())[name].grad, p.data, rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_torch_multihead_mapping_without_qkv_bias_and_its_errors():
    ours = build(MultiHeadAttention, 4, 4, 8, 0.0, 2)
    state = torch_multihead_state_dict(ours)
    assert sorted(state) == ["in_proj_bias", "in_proj_weight", "out_proj.bias", "out_proj.weight"]
    assert state["in_proj_weight"].shape == (12, 4) and not state["in_proj_bias"].any()
    np.testing.assert_array_equal(state["in_proj_weight"][4:8], ours.W_key.weight.numpy())  # query, key, value
    other = build(MultiHeadAttention, 4, 4, 8, 0.0, 2, seed=1)
    x = randn(1, 3, 4)
    assert not np.allclose(other(x).numpy(), ours(x).numpy())
    np.testing.assert_array_equal(load_torch_multihead_state_dict(other, state)(x).numpy(), ours(x).numpy())
    state["in_proj_bias"][0] = 1.0
    with pytest.raises(ValueError, match=r"nonzero in_proj_bias, but the MultiHeadAttention was built with "
                                         r"qkv_bias=False"):
        load_torch_multihead_state_dict(other, state)
    with pytest.raises(ValueError, match=r"GroupedQueryAttention with d_in=4, d_out=4, num_kv_heads=1 of "
                                         r"num_heads=2 does not map"):
        torch_multihead_state_dict(GroupedQueryAttention(4, 4, 8, 0.0, 2, 1))
    with pytest.raises(ValueError, match=r"MultiHeadAttention with d_in=3, d_out=4"):
        torch_multihead_state_dict(MultiHeadAttention(3, 4, 8, 0.0, 2))
    with pytest.raises(ValueError, match=r"MultiHeadLatentAttention"):
        torch_multihead_state_dict(MultiHeadLatentAttention(4, 4, 8, 0.0, 2, kv_latent_dim=2))


# ---------------------------------------------------------------------------------------
# 10. Sliding-window attention
# ---------------------------------------------------------------------------------------

def test_sliding_window_attends_to_the_band_only():
    layer = build(SlidingWindowAttention, 4, 4, 8, 0.0, num_heads=2, window=3)
    layer(randn(2, 6, 4))
    w = layer.last_attn_weights.numpy()  # (b, heads, T, T)
    band = ~causal_blocked(6, 6, window=3)  # query i sees keys i - 2, i - 1, i
    assert (w[..., band] > 0).all() and (w[..., ~band] == 0).all()
    assert band.sum(axis=1).tolist() == [1, 2, 3, 3, 3, 3]
    np.testing.assert_array_equal(layer.mask.numpy(), causal_blocked(8, 8, window=3))


def test_a_window_as_long_as_the_context_is_gqa_from_the_same_seed():
    gqa = build(GroupedQueryAttention, 8, 8, 6, 0.0, 4, 2, qkv_bias=True, rope=True)
    swa = build(SlidingWindowAttention, 8, 8, 6, 0.0, 4, window=6, num_kv_heads=2, qkv_bias=True, rope=True)
    assert list(swa.state_dict()) == list(gqa.state_dict())
    x = randn(2, 6, 8)
    np.testing.assert_array_equal(swa(x).numpy(), gqa(x).numpy())
    short = build(SlidingWindowAttention, 8, 8, 6, 0.0, 4, window=2, num_kv_heads=2, qkv_bias=True, rope=True)
    out = short(x).numpy()
    np.testing.assert_array_equal(out[:, :2], gqa(x).numpy()[:, :2])  # the first two tokens see all they can
    assert not np.allclose(out[:, 2:], gqa(x).numpy()[:, 2:])


@pytest.mark.parametrize("num_heads, num_kv_heads, rope", [(2, None, False), (4, 2, False), (2, 1, True)])
def test_sliding_window_gradients(num_heads, num_kv_heads, rope):
    layer = build(SlidingWindowAttention, 4, 4, 5, 0.0, num_heads, window=2, num_kv_heads=num_kv_heads,
                  qkv_bias=True, rope=rope)
    x = randn(2, 4, 4, requires_grad=True)
    assert gradcheck_module(layer, lambda x: layer(x, attention_mask=[[0, 0, 1, 1], [1, 1, 1, 1]]), x)


@pytest.mark.parametrize("num_heads, num_kv_heads, window", [(2, 2, 2), (4, 2, 3), (4, 1, 1)])
def test_sliding_window_pytorch_parity_forward_and_backward(torch, num_heads, num_kv_heads, window):
    d_in, d_out, T = 5, 8, 5
    twin = torch_attention_twin(torch, d_in, d_out, 6, num_heads, num_kv_heads, qkv_bias=True, window=window)
    ours = to_float64(SlidingWindowAttention(d_in, d_out, 6, 0.0, num_heads, window, num_kv_heads, qkv_bias=True))
    ours.load_state_dict(twin.state_dict())  # the band buffer too: it must be the twin's
    assert_parity(torch, ours, twin, d_in, d_out, T, mask=np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]))


def assert_parity(torch, ours, twin, d_in, d_out, T, mask=None):
    """ours(x) == twin(x), and the gradients of x and of every parameter (the same names), float64."""
    rng = np.random.default_rng(0)
    x_np, upstream = rng.standard_normal((2, T, d_in)), rng.standard_normal((2, T, d_out))
    x = Tensor(x_np.copy(), requires_grad=True, dtype=np.float64)
    out = ours(x) if mask is None else ours(x, attention_mask=mask)
    out.backward(upstream)
    x_t = torch.tensor(x_np, requires_grad=True)
    out_t = twin(x_t) if mask is None else twin(x_t, torch.tensor(mask))
    out_t.backward(torch.tensor(upstream))
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    twin_params = dict(twin.named_parameters())
    assert sorted(twin_params) == sorted(name for name, _ in ours.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, twin_params[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_bidirectional_pytorch_parity_with_the_sdpa_twin(torch):
    twin = torch_attention_twin(torch, 5, 8, 6, 4, 4, qkv_bias=True, causal=False)
    ours = to_float64(BidirectionalAttention(5, 8, 6, 0.0, 4, qkv_bias=True))
    ours.load_state_dict(twin.state_dict())
    assert_parity(torch, ours, twin, 5, 8, 5, mask=np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]))


@pytest.mark.parametrize("window, context_length", [(0, 8), (9, 8), (-1, 8), (2.5, 8)])
def test_bad_window_errors(window, context_length):
    with pytest.raises(ValueError, match=rf"window={window!r} must be an integer between 1 and context_length=8"):
        SlidingWindowAttention(4, 4, context_length, 0.0, 2, window)


# ---------------------------------------------------------------------------------------
# 11. Multi-head latent attention
# ---------------------------------------------------------------------------------------

def mha_of_latent(mla):
    """The MultiHeadAttention that mla is: W_key = W_key_up @ W_kv_down, W_value likewise (no biases)."""
    mha = to_float64(MultiHeadAttention(mla.d_in, mla.d_out, mla.context_length, 0.0, mla.num_heads,
                                        rope=mla.rope is not None))
    mha.W_query.weight.data = mla.W_query.weight.data
    mha.W_key.weight.data = mla.W_key_up.weight.data @ mla.W_kv_down.weight.data  # (d_out, d_in), rank <= latent
    mha.W_value.weight.data = mla.W_value_up.weight.data @ mla.W_kv_down.weight.data
    mha.out_proj.load_state_dict(mla.out_proj.state_dict())
    return mha


@pytest.mark.parametrize("rope", [False, True], ids=["no_positions", "rope"])
def test_latent_attention_is_mha_with_low_rank_key_value_projections(rope):
    mla = build(MultiHeadLatentAttention, 6, 8, 8, 0.0, num_heads=4, kv_latent_dim=3, rope=rope)
    assert [name for name, _ in mla.named_parameters()] == [
        "W_query.weight", "W_kv_down.weight", "W_key_up.weight", "W_value_up.weight", "out_proj.weight",
        "out_proj.bias"]
    assert (mla.W_kv_down.weight.shape, mla.W_key_up.weight.shape) == ((3, 6), (8, 3))
    x = randn(2, 7, 6)
    np.testing.assert_allclose(mla(x).numpy(), mha_of_latent(mla)(x).numpy(), rtol=1e-11, atol=1e-13)
    mla.reset_cache()
    out = np.concatenate([mla(x[:, :4], use_cache=True).numpy(), mla(x[:, 4:], use_cache=True).numpy()], axis=1)
    np.testing.assert_allclose(out, mha_of_latent(mla)(x).numpy(), rtol=1e-11, atol=1e-13)


def test_without_rope_the_key_up_projection_can_be_absorbed_into_the_queries():
    """The docstring's claim: q . (W_key_up c) = (W_key_up^T q) . c, so the cached latents need no expanding."""
    mla = build(MultiHeadLatentAttention, 6, 8, 8, 0.0, num_heads=4, kv_latent_dim=3)
    x = randn(1, 5, 6)
    mla(x)
    q = (x.numpy() @ mla.W_query.weight.data.T).reshape(1, 5, 4, 2).transpose(0, 2, 1, 3)  # (b, H, T, hd)
    latent = x.numpy() @ mla.W_kv_down.weight.data.T  # (b, T, r)
    up = mla.W_key_up.weight.data.reshape(4, 2, 3)  # (H, hd, r): each head's block of rows
    absorbed = np.einsum("bhtd,hdr->bhtr", q, up)  # (b, H, T, r): queries in latent space
    scores = absorbed @ latent[:, None].transpose(0, 1, 3, 2) / np.sqrt(2)  # (b, H, T, T)
    scores[..., np.triu(np.ones((5, 5), bool), 1)] = -np.inf
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(mla.last_attn_weights.numpy(), weights / weights.sum(-1, keepdims=True), rtol=1e-10)


def test_latent_keys_are_rotated_by_the_positions_of_the_cached_tokens():
    mla = build(MultiHeadLatentAttention, 6, 8, 8, 0.0, num_heads=4, kv_latent_dim=3, rope=True)
    latent = randn(1, 3, 3)  # three cached tokens, the last at position 4: positions 2, 3, 4
    keys, values = mla.from_cache((latent,), end=5)
    up = mla.split_heads(mla.W_key_up(latent), 4)  # (1, 4, 3, 2), unrotated
    np.testing.assert_array_equal(keys.numpy(), mla.rope(up, 2).numpy())
    assert not np.allclose(keys.numpy(), mla.rope(up, 0).numpy())
    np.testing.assert_array_equal(values.numpy(), mla.split_heads(mla.W_value_up(latent), 4).numpy())


@pytest.mark.parametrize("rope, qkv_bias", [(False, True), (True, False)])
def test_latent_attention_gradients(rope, qkv_bias):
    layer = build(MultiHeadLatentAttention, 4, 4, 4, 0.0, num_heads=2, kv_latent_dim=2, rope=rope, qkv_bias=qkv_bias)
    x = randn(2, 3, 4, requires_grad=True)
    assert gradcheck_module(layer, lambda x: layer(x, attention_mask=[[0, 1, 1], [1, 1, 1]]), x)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_latent_attention_pytorch_parity_forward_and_backward(torch, qkv_bias):
    twin = torch_latent_twin(torch, 5, 8, 4, 3, qkv_bias)
    ours = to_float64(MultiHeadLatentAttention(5, 8, 6, 0.0, 4, 3, qkv_bias=qkv_bias))
    ours.load_state_dict(twin.state_dict(), strict=False)  # all but our mask buffer
    assert_parity(torch, ours, twin, 5, 8, 5)


@pytest.mark.parametrize("kv_latent_dim", [0, -2, 1.5])
def test_bad_latent_size_errors(kv_latent_dim):
    with pytest.raises(ValueError, match=rf"kv_latent_dim={kv_latent_dim!r} must be a positive integer"):
        MultiHeadLatentAttention(4, 4, 8, 0.0, 2, kv_latent_dim)


# ---------------------------------------------------------------------------------------
# 7. MHA -> GQA by mean-pooling key/value heads
# ---------------------------------------------------------------------------------------

def test_from_multihead_mean_pools_each_group_of_key_value_heads():
    mha = build(MultiHeadAttention, 6, 8, 8, 0.0, num_heads=4, qkv_bias=True, rope=True)
    gqa = GroupedQueryAttention.from_multihead(mha, 2)
    assert isinstance(gqa, GroupedQueryAttention) and gqa.num_kv_heads == 2 and gqa.rope is not None
    assert gqa.W_key.weight.dtype == np.float64 and gqa.training
    heads = mha.W_key.weight.data.reshape(4, 2, 6)  # (num_heads, head_dim, d_in)
    np.testing.assert_allclose(gqa.W_key.weight.data.reshape(2, 2, 6), [heads[:2].mean(0), heads[2:].mean(0)])
    np.testing.assert_allclose(gqa.W_value.bias.data, mha.W_value.bias.data.reshape(2, 2, 2).mean(1).reshape(4))
    np.testing.assert_array_equal(gqa.W_query.weight.data, mha.W_query.weight.data)
    np.testing.assert_array_equal(gqa.out_proj.bias.data, mha.out_proj.bias.data)


def test_from_multihead_is_exact_when_the_heads_of_a_group_agree():
    mha = build(MultiHeadAttention, 6, 8, 8, 0.0, num_heads=4, qkv_bias=True, rope=True)
    x = randn(2, 5, 6)
    same = build(MultiHeadAttention, 6, 8, 8, 0.0, num_heads=4, qkv_bias=True, rope=True)
    assert np.array_equal(GroupedQueryAttention.from_multihead(same, 4)(x).numpy(), same(x).numpy())
    for layer in (mha.W_key, mha.W_value):  # make heads 0, 1 and heads 2, 3 identical
        w, b = layer.weight.data.reshape(4, 2, 6), layer.bias.data.reshape(4, 2)
        w[1], w[3], b[1], b[3] = w[0], w[2], b[0], b[2]
    np.testing.assert_allclose(GroupedQueryAttention.from_multihead(mha, 2)(x).numpy(), mha(x).numpy(), rtol=1e-12)
    assert not np.allclose(GroupedQueryAttention.from_multihead(mha, 1)(x).numpy(), mha(x).numpy())


def test_from_multihead_errors():
    mha = MultiHeadAttention(8, 8, 8, 0.0, num_heads=4)
    with pytest.raises(ValueError, match=r"num_heads=4 must be divisible by num_kv_heads=3"):
        GroupedQueryAttention.from_multihead(mha, 3)
    with pytest.raises(TypeError, match=r"from_multihead converts a MultiHeadAttention, got GroupedQueryAttention"):
        GroupedQueryAttention.from_multihead(GroupedQueryAttention(8, 8, 8, 0.0, 4, 2), 1)
    with pytest.raises(TypeError, match=r"got SlidingWindowAttention"):
        GroupedQueryAttention.from_multihead(SlidingWindowAttention(8, 8, 8, 0.0, 4, 2), 2)


def test_convert_a_whole_model_to_grouped_query():
    manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=7, context_length=8, d_model=8, num_heads=4, positions="rope"))
    idx = Tensor(np.array([[1, 2, 3, 4]]))
    before = model(idx).numpy()
    params_before = sum(p.numel() for p in model.parameters())
    assert convert_to_grouped_query(model, 2) is model
    assert model.cfg.num_kv_heads == 2 and model.cfg.attention == "gqa"
    assert all(type(block.att) is GroupedQueryAttention and block.att.num_kv_heads == 2 for block in model.trf_blocks)
    assert params_before - sum(p.numel() for p in model.parameters()) == 2 * 2 * (8 * 4)  # half of W_key, W_value
    after = model(idx).numpy()
    assert after.shape == before.shape and not np.allclose(after, before)
    rebuilt = Transformer(model.cfg)
    rebuilt.load_state_dict(model.state_dict())  # the config describes the converted model
    np.testing.assert_array_equal(rebuilt(idx).numpy(), after)
    with pytest.raises(ValueError, match=r"num_kv_heads=3 does not divide num_heads=4"):
        convert_to_grouped_query(model, 3)
    local = Transformer(TransformerConfig(vocab_size=7, context_length=8, d_model=8, num_heads=4, window=4,
                                          layer_pattern="GL"))
    with pytest.raises(TypeError, match=r"got SlidingWindowAttention"):
        convert_to_grouped_query(local, 2)
    assert all(type(block.att) is not GroupedQueryAttention for block in local.trf_blocks)  # all or nothing


# ---------------------------------------------------------------------------------------
# The transformer's options, and drawing the new rungs
# ---------------------------------------------------------------------------------------

def test_layer_pattern_makes_local_and_global_layers():
    cfg = TransformerConfig(vocab_size=7, context_length=8, d_model=8, num_layers=7, num_heads=4, num_kv_heads=2,
                            window=3, layer_pattern="LLG")
    model = Transformer(cfg)
    kinds = [type(block.att).__name__ for block in model.trf_blocks]
    assert kinds == ["SlidingWindowAttention"] * 2 + ["GroupedQueryAttention"] + ["SlidingWindowAttention"] * 2 + [
        "GroupedQueryAttention", "SlidingWindowAttention"]
    assert [block.att.window for block in model.trf_blocks] == [3, 3, None, 3, 3, None, 3]
    assert all(block.att.num_kv_heads == 2 for block in model.trf_blocks)
    assert TransformerConfig(7, 8, window=3).layer_pattern == "L"  # every layer local, as Mistral
    latent = Transformer(TransformerConfig(7, 8, d_model=8, num_heads=4, kv_latent_dim=2))
    assert all(type(block.att) is MultiHeadLatentAttention for block in latent.trf_blocks)
    assert latent.cfg.attention == "mla" and cfg.attention == "gqa"


@pytest.mark.parametrize("kwargs, message", [
    (dict(window=0), r"window=0 must be an integer between 1 and context_length=8"),
    (dict(window=9), r"window=9 must be an integer between 1 and context_length=8"),
    (dict(layer_pattern="LG"), r"layer_pattern='LG' says which layers are local, but there is no window"),
    (dict(window=4, layer_pattern="LGX"), r"layer_pattern='LGX' must be a string of L \(local\) and G \(global\)"),
    (dict(window=4, layer_pattern=""), r"layer_pattern='' must be a string"),
    (dict(kv_latent_dim=0), r"kv_latent_dim=0 must be a positive integer"),
    (dict(kv_latent_dim=4, window=4), r"it takes no window \(got 4\)"),
    (dict(kv_latent_dim=4, num_kv_heads=2), r"no num_kv_heads \(got 2 of num_heads=4\)"),
])
def test_config_errors_of_the_new_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(vocab_size=10, context_length=8, **kwargs)


NEW_RUNGS = {
    "bidirectional": lambda: BidirectionalAttention(8, 8, 4, 0.0, 2),
    "sliding_window": lambda: SlidingWindowAttention(8, 8, 4, 0.0, 4, window=2, num_kv_heads=2),
    "latent": lambda: MultiHeadLatentAttention(8, 8, 4, 0.0, 2, kv_latent_dim=3, rope=True),
}


@pytest.mark.parametrize("name", list(NEW_RUNGS) + ["cross"])
def test_the_new_rungs_draw(name, tmp_path):
    manual_seed(0)
    x = randn(1, 4, 8, requires_grad=True)
    layer = CrossAttention(8, 8, 4, 0.0, 2, d_mem=6) if name == "cross" else NEW_RUNGS[name]()
    with viz.record_modules(layer) as rec:
        out = layer(x, randn(1, 5, 6)) if name == "cross" else layer(x)
    dot = viz.to_dot(out, modules=rec, hide_shape_ops=True)
    weights = {"cross": ["W_key", "W_value"], "latent": ["W_kv_down", "W_key_up", "W_value_up"]}.get(
        name, ["W_key", "W_value"])
    assert all(w in dot for w in weights + ["W_query", "out_proj"])
    assert ("MaskedFill" in dot or "masked_fill" in dot) == (name in ("sliding_window", "latent"))
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot program is not installed")
    picture = viz.render(out, tmp_path / name, modules=rec, hide_shape_ops=True)
    assert picture.suffix == ".svg" and picture.stat().st_size > 0


# ---------------------------------------------------------------------------------------
# From the training command line
# ---------------------------------------------------------------------------------------

SMALL = [*SMALL, "--steps", "100"]  # run_testing.SMALL, at most 100 steps


@pytest.mark.parametrize("options, kind", [
    (["--window", "5"], SlidingWindowAttention),  # the copy length + 1: each answer token sees its symbol
    (["--window", "3", "--layer-pattern", "LG"], SlidingWindowAttention),  # too short, but a global layer helps
    (["--window", "5", "--attention", "gqa", "--positions", "rope"], SlidingWindowAttention),
    (["--kv-latent-dim", "8"], MultiHeadLatentAttention),
])
def test_the_new_rungs_learn_the_copy_task_from_the_command_line(tmp_path, options, kind):
    from tinygrad_attn import train
    args = train.parse_args([*SMALL, *options, "--out", str(tmp_path)])
    result = train.train(args, io.StringIO())
    assert result["exact_match"] == 1.0 and result["step"] < 100
    model, _, _ = load_run(tmp_path)
    assert type(model.trf_blocks[0].att) is kind


def test_the_new_options_errors_name_the_flags(capsys):
    from tinygrad_attn import train
    for argv, message in [(["--window", "18"], "--window 18 must be an integer between 1 and --context-length 17"),
                          (["--layer-pattern", "LG"], "--layer-pattern 'LG' says which layers are local"),
                          (["--kv-latent-dim", "0"], "--kv-latent-dim 0 must be a positive integer")]:
        with pytest.raises(SystemExit):
            train.parse_args(argv)
        assert message in capsys.readouterr().err


def test_the_mha_to_gqa_benchmark_runs(capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed
    from benchmarks import mha_to_gqa
    mha_to_gqa.main(["--kv-heads", "2", "--eval-size", "20", "--", *SMALL])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1].strip() for line in lines[1:]] == [
        "multi-head, as trained", "2 kv heads, right after pooling", "2 kv heads, after uptraining",
        "2 kv heads, from scratch, as long"]
    assert "100.0% exact" in lines[1]  # the trained model copies
