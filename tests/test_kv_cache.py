"""KV cache: incremental decoding equals the full forward pass, for the layers and the model
(mha, gqa, mqa, sliding window alone and with GQA, latent attention), with learned positions
and with RoPE, prefilled in one call or in chunks; GQA's smaller cache, the sliding window's
flat one, the latent cache; the mask at absolute positions; reset and the context_length
limit; greedy generation with and without the cache."""

import numpy as np
import pytest

from tinygrad_attn import Tensor, manual_seed, no_grad
from tinygrad_attn.nn import (GroupedQueryAttention, MultiHeadAttention, MultiHeadLatentAttention,
                              SlidingWindowAttention, Transformer, TransformerConfig)

from attention_testing import left_padded, randn, to_float64

LAYER_KINDS = ["mha", "gqa", "mqa", "swa", "swa_gqa", "swa_1", "mla"]
# The model's attention: extra TransformerConfig options of each kind (the local:global stack mixes layers).
MODEL_KINDS = {"mha": {}, "gqa": dict(num_kv_heads=2), "mqa": dict(num_kv_heads=1),
               "swa": dict(window=3, layer_pattern="LG"), "swa_gqa": dict(window=3, num_kv_heads=2),
               "mla": dict(kv_latent_dim=3)}
CHUNKS = [3, 1, 2, 1]  # prefill 3 tokens, then 1, 2 and 1 per call
# Prefill in one call, then one token a call; or in chunks, some longer than the window of 3
CHUNKINGS = [[7], [1] * 7, CHUNKS, [5, 2], [2, 4, 1]]


def attention_layer(kind, rope, d=8, num_heads=4, context_length=8):
    """A float64 layer of each kind: swa has window 3 (swa_1 window 1: each token sees only itself)."""
    manual_seed(0)
    sizes = (d, d, context_length, 0.0, num_heads)
    layer = {"mha": lambda: MultiHeadAttention(*sizes, qkv_bias=True, rope=rope),
             "gqa": lambda: GroupedQueryAttention(*sizes, 2, qkv_bias=True, rope=rope),
             "mqa": lambda: GroupedQueryAttention(*sizes, 1, qkv_bias=True, rope=rope),
             "swa": lambda: SlidingWindowAttention(*sizes, 3, qkv_bias=True, rope=rope),
             "swa_gqa": lambda: SlidingWindowAttention(*sizes, 3, num_kv_heads=2, qkv_bias=True, rope=rope),
             "swa_1": lambda: SlidingWindowAttention(*sizes, 1, qkv_bias=True, rope=rope),
             "mla": lambda: MultiHeadLatentAttention(*sizes, 3, qkv_bias=True, rope=rope)}[kind]()
    return to_float64(layer)


def model(kind, positions, context_length=12, dropout=0.0):
    manual_seed(1)
    cfg = TransformerConfig(vocab_size=11, context_length=context_length, d_model=8, num_layers=2, num_heads=4,
                            positions=positions, dropout=dropout, **MODEL_KINDS[kind])
    return to_float64(Transformer(cfg)).eval()


def in_chunks(fn, x, chunks, mask=None):
    """fn(piece, mask piece, use_cache=True) on consecutive pieces of x (b, T, ...), outputs joined on dim 1."""
    outs, start = [], 0
    for size in chunks:
        piece_mask = None if mask is None else mask[:, start:start + size]
        outs.append(fn(x[:, start:start + size], piece_mask, use_cache=True).numpy())
        start += size
    return np.concatenate(outs, axis=1)


# ---------------------------------------------------------------------------------------
# The attention layers
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunks", CHUNKINGS, ids=lambda c: "+".join(map(str, c)))
@pytest.mark.parametrize("rope", [False, True], ids=["no_positions", "rope"])
@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_layer_incremental_decoding_equals_full_forward(kind, rope, chunks):
    layer = attention_layer(kind, rope)
    x = randn(2, 7, 8)
    full = layer(x).numpy()
    np.testing.assert_allclose(in_chunks(layer, x, chunks), full, rtol=1e-12, atol=1e-13)
    assert layer.ptr_current_pos == 7


@pytest.mark.parametrize("kind", ["mha", "gqa", "swa_gqa", "mla"])
def test_layer_incremental_decoding_with_left_padding(kind):
    layer = attention_layer(kind, rope=True)
    x = randn(2, 7, 8)
    mask = np.array([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    full = layer(x, attention_mask=mask).numpy()
    np.testing.assert_allclose(in_chunks(layer, x, CHUNKS, mask), full, rtol=1e-12, atol=1e-13)
    assert layer.cache_pad.shape == (2, 2 if kind.startswith("swa") else 7)  # the padding of the cached tokens
    layer.reset_cache()
    # the padding of the prompt only; the decoded tokens pass no mask and count as real
    np.testing.assert_allclose(in_chunks(layer, x, CHUNKS, np.pad(mask[:, :3], ((0, 0), (0, 4)), constant_values=1)),
                               full, rtol=1e-12, atol=1e-13)


def test_gqa_cache_holds_kv_heads_before_sharing():
    mha, gqa, mqa = (attention_layer(kind, rope=False) for kind in ("mha", "gqa", "mqa"))
    x = randn(2, 5, 8)
    for layer in (mha, gqa, mqa):
        layer(x, use_cache=True)
    assert mha.cache_k.shape == mha.cache_v.shape == (2, 4, 5, 2)  # (b, num_heads, T, head_dim)
    assert gqa.cache_k.shape == gqa.cache_v.shape == (2, 2, 5, 2)  # (b, num_kv_heads, T, head_dim)
    assert mqa.cache_k.shape == (2, 1, 5, 2)

    def nbytes(layer):
        return layer.cache_k.numpy().nbytes + layer.cache_v.numpy().nbytes

    assert nbytes(mha) == 2 * 2 * 4 * 5 * 2 * 8  # keys and values, float64
    assert nbytes(gqa) * 4 == nbytes(mha) * 2  # num_kv_heads / num_heads of MHA's
    assert nbytes(mqa) * 4 == nbytes(mha)


def test_sliding_window_cache_stays_flat_however_long_the_generation():
    layer = attention_layer("swa_gqa", rope=True, context_length=40)
    x = randn(1, 40, 8)
    full = layer(x).numpy()
    outs = [layer(x[:, :6], use_cache=True).numpy()]
    assert layer.cache_k.shape == layer.cache_v.shape == (1, 2, 2, 2)  # window - 1 = 2 tokens of 2 kv heads
    for t in range(6, 40):
        outs.append(layer(x[:, t:t + 1], use_cache=True).numpy())
        assert layer.cache_k.shape == (1, 2, 2, 2) and layer.cache_k.numpy().nbytes == 2 * 2 * 2 * 8
        assert layer.last_attn_weights.shape == (1, 4, 1, 3)  # one query reads the window: 2 cached + its own
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, rtol=1e-12, atol=1e-13)
    assert layer.ptr_current_pos == 40


def test_latent_cache_holds_only_the_latents():
    layer = attention_layer("mla", rope=True)
    layer(randn(2, 5, 8), use_cache=True)
    assert len(layer.cache) == 1 and layer.cache_latent.shape == (2, 5, 3)  # (b, T, kv_latent_dim): no heads
    assert layer.cache_k is None and layer.cache_v is None
    layer.reset_cache()
    assert layer.cache_latent is None


def test_causal_mask_is_aligned_to_absolute_positions():
    layer = attention_layer("gqa", rope=False)
    x = randn(1, 6, 8)
    layer(x[:, :4], use_cache=True)
    layer(x[:, 4:], use_cache=True)  # two queries, at positions 4 and 5, against six keys
    w = layer.last_attn_weights.numpy()
    assert w.shape == (1, 4, 2, 6)
    assert (w[:, :, 0, :5] > 0).all() and (w[:, :, 0, 5] == 0).all()  # position 4 sees keys 0..4, not 5
    assert (w[:, :, 1] > 0).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kind", ["mha", "gqa"])
def test_cache_past_context_length_is_an_error_and_reset_starts_again(kind):
    layer = attention_layer(kind, rope=True, context_length=6)
    x = randn(1, 6, 8)
    layer(x[:, :4], use_cache=True)
    with pytest.raises(ValueError, match=r"3 new tokens after the 4 in the KV cache would make 7, more than "
                                         r"context_length=6; call reset_cache\(\)"):
        layer(randn(1, 3, 8), use_cache=True)
    assert layer.ptr_current_pos == 4  # the failed call changed nothing
    layer(x[:, 4:], use_cache=True)
    with pytest.raises(ValueError, match=r"after the 6 in the KV cache"):
        layer(x[:, :1], use_cache=True)
    layer.reset_cache()
    assert layer.cache_k is None and layer.ptr_current_pos == 0
    np.testing.assert_allclose(layer(x, use_cache=True).numpy(), layer(x).numpy(), rtol=1e-12)


def test_cache_batch_size_mismatch_is_an_error():
    layer = attention_layer("mha", rope=False)
    layer(randn(2, 3, 8), use_cache=True)
    with pytest.raises(ValueError, match=r"the KV cache holds a batch of 2, got a batch of 3"):
        layer(randn(3, 1, 8), use_cache=True)


def test_forward_without_cache_leaves_the_cache_alone():
    layer = attention_layer("mha", rope=True)
    x = randn(1, 5, 8)
    layer(x[:, :3], use_cache=True)
    layer(randn(1, 6, 8))  # a full pass in between
    np.testing.assert_allclose(layer(x[:, 3:], use_cache=True).numpy(), layer(x).numpy()[:, 3:], rtol=1e-12)


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("positions", ["learned", "rope"])
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_model_incremental_decoding_equals_full_forward(kind, positions):
    m = model(kind, positions)
    idx = np.random.default_rng(2).integers(0, 11, size=(2, 7))
    full = m(Tensor(idx)).numpy()
    for chunks in (CHUNKS, [5, 2]):
        np.testing.assert_allclose(in_chunks(m, idx, chunks), full, rtol=1e-11, atol=1e-12)
        assert m.current_pos == 7 and all(block.att.ptr_current_pos == 7 for block in m.trf_blocks)
        m.reset_cache()
    assert m.current_pos == 0 and all(block.att.cache is None for block in m.trf_blocks)
    mask = np.array([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    np.testing.assert_allclose(in_chunks(m, idx, CHUNKS, mask), m(Tensor(idx), attention_mask=mask).numpy(),
                               rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("positions", ["learned", "rope"])
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_greedy_generation_with_and_without_cache_is_identical(kind, positions):
    m = model(kind, positions)
    prompt = Tensor(np.array([[1, 2, 3], [4, 5, 6]]))
    cached = m.generate(prompt, 8, temperature=0.0, use_cache=True)
    uncached = m.generate(prompt, 8, temperature=0.0, use_cache=False)
    assert cached.shape == (2, 11) and cached.dtype == np.int64
    np.testing.assert_array_equal(cached.numpy(), uncached.numpy())
    np.testing.assert_array_equal(cached.numpy()[:, :3], prompt.numpy())
    # each new token is the argmax of a full forward pass over everything before it
    logits = m(cached[:, :-1]).numpy()
    np.testing.assert_array_equal(logits[:, 2:].argmax(-1), cached.numpy()[:, 3:])


@pytest.mark.parametrize("positions", ["learned", "rope"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_of_a_left_padded_batch_equals_each_prompt_alone(positions, use_cache):
    m = model("gqa", positions)
    prompts = [np.array([3, 1, 4, 1, 5]), np.array([9, 2]), np.array([6])]
    idx, mask = left_padded(prompts, 5)
    out = m.generate(Tensor(idx), 5, temperature=0.0, use_cache=use_cache, attention_mask=Tensor(mask)).numpy()
    for row, prompt in zip(out, prompts):
        alone = m.generate(Tensor(prompt[None]), 5, temperature=0.0, use_cache=use_cache).numpy()[0]
        np.testing.assert_array_equal(row[5 - len(prompt):], alone)


def test_model_cache_past_context_length_is_an_error():
    m = model("mha", "learned", context_length=6)
    m(Tensor(np.zeros((1, 4), dtype=np.int64)), use_cache=True)
    with pytest.raises(ValueError, match=r"3 new tokens after the 4 in the KV cache would make 7, more than "
                                         r"context_length=6; call reset_cache"):
        m(Tensor(np.zeros((1, 3), dtype=np.int64)), use_cache=True)
    with pytest.raises(ValueError, match=r"a prompt of 4 tokens plus max_new_tokens=3 exceeds context_length=6"):
        m.generate(Tensor(np.zeros((1, 4), dtype=np.int64)), 3, use_cache=True)
    out = m.generate(Tensor(np.zeros((1, 4), dtype=np.int64)), 3, temperature=0.0, use_cache=False)
    assert out.shape == (1, 7)  # without the cache the window slides, as the book's generate
    assert m.current_pos == 0  # generate leaves the cache empty


def test_the_cache_is_written_in_place():
    """Preallocated for context_length tokens at the first call; each later call writes its tokens into the same
    buffers, so no earlier entry is copied, and no graph is kept under no_grad."""
    layer = attention_layer("gqa", rope=True)
    x = randn(1, 7, 8)
    with no_grad():
        layer(x[:, :3], use_cache=True)
        buffers = [b.numpy() for b in layer.cache_buffers]
        assert [b.shape for b in buffers] == [(1, 2, 8, 2)] * 2  # (b, num_kv_heads, context_length, head_dim)
        for t in range(3, 7):
            out = layer(x[:, t:t + 1], use_cache=True)
            assert all(a is b.numpy() for a, b in zip(buffers, layer.cache_buffers))
            assert np.shares_memory(layer.cache_k.numpy(), buffers[0]) and layer.cache_k.shape[2] == t + 1
            assert out.grad_fn is None and layer.cache_k.grad_fn is None


def test_a_cached_call_that_records_a_graph_reaches_its_own_keys_and_values():
    layer = attention_layer("mha", rope=False)
    x = randn(1, 5, 8)
    layer(x[:, :3], use_cache=True)
    out = layer(x[:, 3:], use_cache=True)  # two new tokens after three cached ones
    out.backward(np.ones(out.shape))
    assert np.abs(layer.W_key.weight.grad.numpy()).max() > 0 and np.abs(layer.W_value.weight.grad.numpy()).max() > 0
