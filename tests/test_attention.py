"""The attention ladder: the book's numbers, each rung against the one before, causality,
padding, gradients by finite differences, PyTorch parity and the errors."""

import numpy as np
import pytest

from tinygrad_attn import Tensor, fused_ops, gradcheck, manual_seed
from tinygrad_attn.fused import attention
from tinygrad_attn.nn import (CausalAttention, GroupedQueryAttention, MultiHeadAttention, MultiHeadAttentionWrapper,
                              SelfAttention_v1, SelfAttention_v2, simple_self_attention)
from tinygrad_attn.nn.rope import RotaryEmbedding

from attention_testing import gradcheck_module, left_padded, randn, to_float64, torch_attention_twin

# "Your journey starts with one step", as 3-d embeddings (book section 3.3.1)
INPUTS = np.array([[0.43, 0.15, 0.89],   # Your
                   [0.55, 0.87, 0.66],   # journey
                   [0.57, 0.85, 0.64],   # starts
                   [0.22, 0.58, 0.33],   # with
                   [0.77, 0.25, 0.10],   # one
                   [0.05, 0.80, 0.55]])  # step


def numpy_self_attention(x):
    scores = x @ x.T
    weights = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    return weights, weights @ x


def causal_layers(d_in=4, d_out=4, context_length=8, rope=False):
    """One float64 layer of each causal rung (and RoPE variants of the fused ones), keyed by name."""
    manual_seed(0)
    layers = {
        "causal": CausalAttention(d_in, d_out, context_length, 0.0),
        "wrapper": MultiHeadAttentionWrapper(d_in, d_out // 2, context_length, 0.0, num_heads=2),
        "mha": MultiHeadAttention(d_in, d_out, context_length, 0.0, num_heads=2),
        "gqa": GroupedQueryAttention(d_in, d_out, context_length, 0.0, num_heads=4, num_kv_heads=2),
        "mha_rope": MultiHeadAttention(d_in, d_out, context_length, 0.0, num_heads=2, rope=True),
        "mqa_rope": GroupedQueryAttention(d_in, d_out, context_length, 0.0, num_heads=2, num_kv_heads=1, rope=True),
    }
    return {name: to_float64(layer) for name, layer in layers.items()}


CAUSAL = list(causal_layers())


# ---------------------------------------------------------------------------------------
# 1. Simple self-attention: the book's published numbers
# ---------------------------------------------------------------------------------------

def test_simple_self_attention_reproduces_the_book():
    weights, context = simple_self_attention(Tensor(INPUTS))
    # Book section 3.3: the weights and the context vector of the query "journey" (index 1).
    # The book prints the last weight as 0.1581 (with 0.2581 the six would sum to 1.1).
    np.testing.assert_allclose(weights.numpy()[1], [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581], atol=1e-4)
    np.testing.assert_allclose(context.numpy()[1], [0.4419, 0.6515, 0.5683], atol=1e-4)
    # the first and last rows of the whole context matrix
    np.testing.assert_allclose(context.numpy()[0], [0.4421, 0.5931, 0.5790], atol=1e-4)
    np.testing.assert_allclose(context.numpy()[-1], [0.4177, 0.6503, 0.5645], atol=1e-4)
    # and all of it against a direct numpy computation
    expected_weights, expected_context = numpy_self_attention(INPUTS)
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-6)
    np.testing.assert_allclose(context.numpy(), expected_context, rtol=1e-6)
    np.testing.assert_allclose(weights.numpy().sum(axis=-1), 1.0, rtol=1e-6)


def test_simple_self_attention_batched_equals_each_sequence():
    x = np.stack([INPUTS, INPUTS[::-1]])  # (2, 6, 3)
    weights, context = simple_self_attention(Tensor(x, dtype=np.float64))
    assert weights.shape == (2, 6, 6) and context.shape == (2, 6, 3)
    for b in range(2):
        expected_weights, expected_context = numpy_self_attention(x[b])
        np.testing.assert_allclose(weights.numpy()[b], expected_weights, rtol=1e-12)
        np.testing.assert_allclose(context.numpy()[b], expected_context, rtol=1e-12)


def test_simple_self_attention_gradients():
    x = Tensor(INPUTS.copy(), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda x: simple_self_attention(x)[1], [x])
    assert gradcheck(lambda x: simple_self_attention(x)[0], [x])


# ---------------------------------------------------------------------------------------
# 2.-3. Trainable weights: v1 (raw Parameters) and v2 (Linear)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 3), (2, 6, 3)])
def test_v1_equals_v2_given_transposed_weights(shape):
    manual_seed(123)
    v1, v2 = to_float64(SelfAttention_v1(3, 2)), to_float64(SelfAttention_v2(3, 2))
    for name in ("W_query", "W_key", "W_value"):
        getattr(v2, name).weight.data = getattr(v1, name).data.T.copy()  # Linear stores (d_out, d_in)
    x = randn(*shape)
    out1, out2 = v1(x), v2(x)
    assert out1.shape == shape[:-1] + (2,)
    np.testing.assert_allclose(out1.numpy(), out2.numpy(), rtol=1e-12)
    assert v1.last_attn_weights.shape == shape[:-2] + (1, 6, 6)
    np.testing.assert_allclose(v1.last_attn_weights.numpy().sum(axis=-1), 1.0, rtol=1e-12)


def test_v1_matches_a_direct_numpy_computation_with_scaling():
    manual_seed(1)
    v1 = to_float64(SelfAttention_v1(3, 2))
    q, k, v = (INPUTS @ getattr(v1, name).data for name in ("W_query", "W_key", "W_value"))
    scores = q @ k.T / np.sqrt(2)
    weights = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(v1(Tensor(INPUTS, dtype=np.float64)).numpy(), weights @ v, rtol=1e-12)


def test_v1_and_v2_gradients():
    manual_seed(2)
    x = randn(2, 3, 3, requires_grad=True)
    mask = np.array([[0, 1, 1], [1, 1, 1]])
    v1 = to_float64(SelfAttention_v1(3, 2))
    assert gradcheck_module(v1, lambda x: v1(x, mask), x)
    v2 = to_float64(SelfAttention_v2(3, 2, qkv_bias=True))
    assert gradcheck_module(v2, lambda x: v2(x, mask), x)


def test_parameter_counts_match_closed_forms():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    d_in, d_out, heads = 768, 768, 12
    assert count(SelfAttention_v1(d_in, d_out)) == 3 * d_in * d_out
    assert count(SelfAttention_v2(d_in, d_out, qkv_bias=True)) == 3 * (d_in * d_out + d_out)
    assert count(CausalAttention(d_in, 64, 16, 0.0)) == 3 * d_in * 64
    assert count(MultiHeadAttentionWrapper(d_in, 64, 16, 0.0, heads)) == heads * 3 * d_in * 64
    mha = MultiHeadAttention(d_in, d_out, 16, 0.0, num_heads=heads)
    assert count(mha) == 4 * d_in * d_out + d_out == 2_360_064  # the book's number
    head_dim, kv = d_out // heads, 4
    gqa = GroupedQueryAttention(d_in, d_out, 16, 0.0, num_heads=heads, num_kv_heads=kv)
    assert count(gqa) == 2 * d_in * d_out + 2 * d_in * kv * head_dim + d_out == 1_573_632
    mqa = GroupedQueryAttention(d_in, d_out, 16, 0.0, num_heads=heads, num_kv_heads=1)
    assert count(mqa) == 2 * d_in * d_out + 2 * d_in * head_dim + d_out
    assert count(MultiHeadAttention(d_in, d_out, 16, 0.0, num_heads=heads, qkv_bias=True)) == 2_360_064 + 3 * d_out


def test_book_names_in_state_dicts():
    assert list(CausalAttention(3, 2, 6, 0.0).state_dict()) == [
        "W_query.weight", "W_key.weight", "W_value.weight", "mask"]
    assert sorted(MultiHeadAttentionWrapper(3, 2, 6, 0.0, 2).state_dict()) == sorted(
        f"heads.{i}.{name}" for i in range(2) for name in ("W_query.weight", "W_key.weight", "W_value.weight", "mask"))
    mha = MultiHeadAttention(4, 4, 6, 0.0, num_heads=2, rope=True)
    assert list(mha.state_dict()) == ["W_query.weight", "W_key.weight", "W_value.weight", "out_proj.weight",
                                      "out_proj.bias", "mask"]  # the RoPE tables are not persistent
    assert (mha.num_heads, mha.head_dim, mha.d_out) == (2, 2, 4)
    gqa = GroupedQueryAttention(4, 4, 6, 0.0, num_heads=2, num_kv_heads=1)
    assert list(gqa.state_dict()) == list(MultiHeadAttention(4, 4, 6, 0.0, 2).state_dict())
    assert gqa.W_key.weight.shape == gqa.W_value.weight.shape == (2, 4) and gqa.group_size == 2


# ---------------------------------------------------------------------------------------
# 4.-7. The causal rungs against each other
# ---------------------------------------------------------------------------------------

def test_causal_attention_matches_numpy():
    layer = causal_layers()["causal"]
    x = randn(2, 5, 4)
    q, k, v = (x.numpy() @ getattr(layer, name).weight.data.T for name in ("W_query", "W_key", "W_value"))
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(4)
    scores[:, np.triu(np.ones((5, 5), bool), 1)] = -np.inf
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(layer(x).numpy(), weights @ v, rtol=1e-12)


def test_wrapper_with_one_head_equals_causal_attention():
    manual_seed(3)
    causal = to_float64(CausalAttention(4, 3, 8, 0.0, qkv_bias=True))
    wrapper = to_float64(MultiHeadAttentionWrapper(4, 3, 8, 0.0, num_heads=1, qkv_bias=True))
    wrapper.heads[0].load_state_dict(causal.state_dict())
    x = randn(2, 5, 4)
    np.testing.assert_allclose(wrapper(x).numpy(), causal(x).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(wrapper.last_attn_weights.numpy(), causal.last_attn_weights.numpy())


def test_wrapper_concatenates_heads():
    wrapper = causal_layers()["wrapper"]
    x = randn(2, 5, 4)
    out = wrapper(x)
    assert out.shape == (2, 5, 2 * 2)  # num_heads * d_out
    for i, head in enumerate(wrapper.heads):
        np.testing.assert_allclose(out.numpy()[..., 2 * i:2 * i + 2], head(x).numpy(), rtol=1e-12)
    assert wrapper.last_attn_weights.shape == (2, 2, 5, 5)


def test_gqa_with_as_many_kv_heads_as_query_heads_is_mha_from_the_same_seed():
    manual_seed(4)
    mha = MultiHeadAttention(6, 6, 8, 0.0, num_heads=3, qkv_bias=True, rope=True)
    manual_seed(4)
    gqa = GroupedQueryAttention(6, 6, 8, 0.0, num_heads=3, num_kv_heads=3, qkv_bias=True, rope=True)
    assert list(mha.state_dict()) == list(gqa.state_dict())  # the same parameters in the same order
    assert all(np.array_equal(a, gqa.state_dict()[k]) for k, a in mha.state_dict().items())  # drawn alike
    x = randn(2, 5, 6)
    assert np.array_equal(gqa(x).numpy(), mha(x).numpy())
    assert np.array_equal(gqa(x, use_cache=True).numpy(), mha(x, use_cache=True).numpy())


def test_gqa_key_value_projections_have_num_kv_heads_heads_and_are_the_only_difference():
    manual_seed(4)
    mha = MultiHeadAttention(8, 8, 8, 0.0, num_heads=4)
    manual_seed(4)
    gqa = GroupedQueryAttention(8, 8, 8, 0.0, num_heads=4, num_kv_heads=2)
    shapes = {k: v.shape for k, v in gqa.state_dict().items()}
    assert shapes["W_key.weight"] == shapes["W_value.weight"] == (4, 8)  # 2 heads of head_dim 2
    assert np.array_equal(gqa.W_query.weight.numpy(), mha.W_query.weight.numpy())  # drawn first, alike
    with pytest.raises(ValueError, match=r"gives each of its num_heads=4 query heads its own key/value head; "
                                         r"for num_kv_heads=2 use GroupedQueryAttention"):
        MultiHeadAttention(8, 8, 8, 0.0, num_heads=4, num_kv_heads=2)


def test_gqa_shares_kv_heads_in_repeat_interleave_order():
    """Query head h uses key/value head h // group_size: [k0, k0, k1, k1], not [k0, k1, k0, k1]."""
    manual_seed(5)
    b, T, d_in, num_heads, num_kv, hd = 2, 4, 5, 4, 2, 3
    gqa = to_float64(GroupedQueryAttention(d_in, num_heads * hd, 8, 0.0, num_heads=num_heads, num_kv_heads=num_kv))
    x = randn(b, T, d_in)

    def expected(kv_head_of):
        q = (x.numpy() @ gqa.W_query.weight.data.T).reshape(b, T, num_heads, hd)
        k = (x.numpy() @ gqa.W_key.weight.data.T).reshape(b, T, num_kv, hd)
        v = (x.numpy() @ gqa.W_value.weight.data.T).reshape(b, T, num_kv, hd)
        heads = []
        for h in range(num_heads):
            s = q[:, :, h] @ k[:, :, kv_head_of(h)].transpose(0, 2, 1) / np.sqrt(hd)
            s[:, np.triu(np.ones((T, T), bool), 1)] = -np.inf
            w = np.exp(s - s.max(-1, keepdims=True))
            heads.append(w / w.sum(-1, keepdims=True) @ v[:, :, kv_head_of(h)])
        return np.concatenate(heads, -1) @ gqa.out_proj.weight.data.T + gqa.out_proj.bias.data

    out = gqa(x).numpy()
    np.testing.assert_allclose(out, expected(lambda h: h // (num_heads // num_kv)), rtol=1e-10)
    assert not np.allclose(out, expected(lambda h: h % num_kv))  # torch.repeat's order would differ


def test_mha_as_a_fused_wrapper():
    """MultiHeadAttention with out_proj = identity equals the wrapper whose heads hold its weight slices."""
    manual_seed(6)
    mha = to_float64(MultiHeadAttention(4, 6, 8, 0.0, num_heads=3))
    wrapper = to_float64(MultiHeadAttentionWrapper(4, 2, 8, 0.0, num_heads=3))
    mha.out_proj.weight.data, mha.out_proj.bias.data = np.eye(6), np.zeros(6)
    for i, head in enumerate(wrapper.heads):
        for name in ("W_query", "W_key", "W_value"):
            getattr(head, name).weight.data = getattr(mha, name).weight.data[2 * i:2 * i + 2].copy()
    x = randn(2, 5, 4)
    np.testing.assert_allclose(mha(x).numpy(), wrapper(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(mha.last_attn_weights.numpy(), wrapper.last_attn_weights.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------
# Causality, attention weights and dropout
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CAUSAL)
def test_causality_future_tokens_change_nothing_before_them(name):
    layer = causal_layers()[name]
    x = randn(2, 6, 4, seed=1)
    changed = x.numpy().copy()
    changed[:, 3:] = np.random.default_rng(9).standard_normal(changed[:, 3:].shape)
    out, out_changed = layer(x).numpy(), layer(Tensor(changed, dtype=np.float64)).numpy()
    np.testing.assert_array_equal(out[:, :3], out_changed[:, :3])
    assert not np.allclose(out[:, 3:], out_changed[:, 3:])


@pytest.mark.parametrize("name", CAUSAL)
def test_attention_weights_rows_sum_to_one_and_the_future_is_exactly_zero(name):
    layer = causal_layers()[name]
    layer(randn(2, 5, 4))
    w = layer.last_attn_weights.numpy()  # (b, heads, T, T)
    assert w.shape[0] == 2 and w.shape[2:] == (5, 5)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-12)
    assert (w[..., np.triu(np.ones((5, 5), bool), 1)] == 0).all()
    assert (w[..., np.tril(np.ones((5, 5), bool))] > 0).all()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
def test_dropout_acts_on_the_attention_weights_in_training_only(fused):
    manual_seed(7)
    layer = to_float64(MultiHeadAttention(4, 4, 8, dropout=0.5, num_heads=2))
    x = randn(2, 5, 4)
    with fused_ops(fused):
        queries, keys = randn(2, 2, 5, 3), randn(2, 2, 5, 3)
        eye = Tensor(np.broadcast_to(np.eye(5), (2, 2, 5, 5)).copy())  # values = identity: the output is the weights
        dropped, weights = attention(queries, keys, eye, None, 1.0, dropout_p=0.5)
        weights, kept = weights(), dropped.numpy() != 0
        assert 0 < kept.mean() < 1
        np.testing.assert_allclose(dropped.numpy()[kept], 2 * weights.numpy()[kept], rtol=1e-6)
        out_train = layer(x).numpy()
        layer.eval()
        out_eval = layer(x).numpy()
        np.testing.assert_array_equal(layer(x).numpy(), out_eval)
    assert not np.allclose(out_train, out_eval)


# ---------------------------------------------------------------------------------------
# Padding masks
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CAUSAL + ["v1", "v2"])
def test_left_padding_is_invisible_to_real_tokens(name):
    manual_seed(8)
    layer = causal_layers().get(name) or to_float64({"v1": SelfAttention_v1, "v2": SelfAttention_v2}[name](4, 4))
    rng = np.random.default_rng(10)
    seqs = [rng.standard_normal((6, 4)), rng.standard_normal((4, 4)), rng.standard_normal((1, 4))]
    batch, mask = left_padded(seqs, 6, pad_value=7.0)  # a large pad value: leaking it would show
    out = layer(Tensor(batch, dtype=np.float64), attention_mask=Tensor(mask)).numpy()
    for i, seq in enumerate(seqs):
        alone = layer(Tensor(seq[None], dtype=np.float64)).numpy()[0]
        np.testing.assert_allclose(out[i, 6 - len(seq):], alone, rtol=1e-10, atol=1e-12)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", CAUSAL)
def test_fully_masked_rows_give_zero_weights_not_nan(name):
    layer = causal_layers()[name]
    mask = np.array([[0, 0, 1, 1], [0, 0, 0, 0]])  # left padding; the second row is all padding
    out = layer(randn(2, 4, 4), attention_mask=mask)
    w = layer.last_attn_weights.numpy()
    assert np.isfinite(out.numpy()).all() and np.isfinite(w).all()
    assert (w[0, :, :2] == 0).all() and (w[1] == 0).all()  # padding queries see no key at all
    assert (w[0, :, 2:, :2] == 0).all()  # real queries give padding keys weight exactly 0
    np.testing.assert_allclose(w[0, :, 2:].sum(-1), 1.0, rtol=1e-12)


def test_padding_rows_have_zero_gradient_into_real_outputs():
    layer = causal_layers()["mha"]
    x = randn(1, 4, 4, requires_grad=True)
    layer(x, attention_mask=[[0, 0, 1, 1]])[:, 2:].sum().backward()
    assert (x.grad.numpy()[:, :2] == 0).all() and np.abs(x.grad[:, 2:]).sum() > 0


# ---------------------------------------------------------------------------------------
# Gradients by finite differences (inputs and every parameter, float64)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CAUSAL)
def test_causal_layers_gradients(name):
    layer = causal_layers(d_in=4, d_out=4, context_length=4)[name]
    x = randn(2, 3, 4, requires_grad=True)
    mask = np.array([[0, 1, 1], [1, 1, 1]])  # includes a fully masked row
    assert gradcheck_module(layer, lambda x: layer(x, attention_mask=mask), x)


def test_causal_attention_with_bias_gradients():
    manual_seed(9)
    layer = to_float64(CausalAttention(3, 2, 4, 0.0, qkv_bias=True))
    x = randn(2, 3, 3, requires_grad=True)
    assert gradcheck_module(layer, layer, x)


# ---------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------

def test_rope_rotation_keeps_norms_and_scores_depend_on_relative_position_only():
    rope = RotaryEmbedding(head_dim=6, context_length=20)
    q, k = randn(1, 1, 1, 6, seed=1), randn(1, 1, 1, 6, seed=2)

    def score(m, n):
        return float((rope(q, offset=m) * rope(k, offset=n)).sum().item())

    np.testing.assert_allclose(np.linalg.norm(rope(q, offset=7).numpy()), np.linalg.norm(q.numpy()), rtol=1e-12)
    np.testing.assert_allclose(score(5, 2), score(13, 10), rtol=1e-10)
    np.testing.assert_allclose(score(3, 3), float((q * k).sum().item()), rtol=1e-10)
    assert not np.isclose(score(5, 2), score(5, 4))
    np.testing.assert_array_equal(rope(q, offset=0).numpy(), q.numpy())  # position 0: no rotation


def test_rope_position_zero_pairs_dims_in_halves_like_llama():
    rope = RotaryEmbedding(head_dim=4, context_length=4, theta_base=100)
    x = randn(1, 1, 1, 4)
    a = 1.0 * np.array([1, 100 ** -0.5])  # position 1, theta_i = base^(-2i/d)
    x1, x2 = x.numpy()[..., :2], x.numpy()[..., 2:]
    expected = np.concatenate([x1 * np.cos(a) - x2 * np.sin(a), x2 * np.cos(a) + x1 * np.sin(a)], -1)
    np.testing.assert_allclose(rope(x, offset=1).numpy(), expected, rtol=1e-12)


def test_rope_gradient():
    rope = RotaryEmbedding(head_dim=4, context_length=6)
    x = randn(2, 1, 3, 4, requires_grad=True)
    assert gradcheck(lambda x: rope(x, offset=2), [x])


# ---------------------------------------------------------------------------------------
# PyTorch parity (skipped without torch)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_heads, num_kv_heads, qkv_bias", [(2, 2, False), (4, 4, True), (4, 2, False),
                                                              (4, 1, True)])
def test_pytorch_parity_forward_and_backward(torch, num_heads, num_kv_heads, qkv_bias):
    d_in, d_out, T = 5, 8, 4
    twin = torch_attention_twin(torch, d_in, d_out, 6, num_heads, num_kv_heads, qkv_bias)
    ours = (MultiHeadAttention(d_in, d_out, 6, 0.0, num_heads, qkv_bias) if num_heads == num_kv_heads else
            GroupedQueryAttention(d_in, d_out, 6, 0.0, num_heads, num_kv_heads, qkv_bias))
    to_float64(ours).load_state_dict(twin.state_dict())  # the same names: strict loading checks it
    x_np = np.random.default_rng(0).standard_normal((2, T, d_in))
    mask_np = np.array([[1, 1, 1, 0], [1, 1, 1, 1]])  # right padding: no query loses every key
    upstream = np.random.default_rng(1).standard_normal((2, T, d_out))

    x = Tensor(x_np.copy(), requires_grad=True, dtype=np.float64)
    out = ours(x, attention_mask=mask_np)
    out.backward(upstream)
    x_t = torch.tensor(x_np, requires_grad=True)
    out_t = twin(x_t, torch.tensor(mask_np))
    out_t.backward(torch.tensor(upstream))

    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    twin_params = dict(twin.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, twin_params[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------------------
# Bad input: ValueErrors that name the numbers
# ---------------------------------------------------------------------------------------

def test_bad_configuration_errors():
    with pytest.raises(ValueError, match=r"d_out=10 must be divisible by num_heads=4"):
        MultiHeadAttention(8, 10, 16, 0.0, num_heads=4)
    with pytest.raises(ValueError, match=r"num_heads=4 must be divisible by num_kv_heads=3"):
        GroupedQueryAttention(8, 8, 16, 0.0, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match=r"num_heads=4 must be divisible by num_kv_heads=0"):
        GroupedQueryAttention(8, 8, 16, 0.0, num_heads=4, num_kv_heads=0)
    with pytest.raises(ValueError, match=r"head_dim must be even, got 3"):
        MultiHeadAttention(6, 6, 16, 0.0, num_heads=2, rope=True)
    with pytest.raises(ValueError, match=r"num_heads must be at least 1, got 0"):
        MultiHeadAttentionWrapper(4, 4, 8, 0.0, num_heads=0)


@pytest.mark.parametrize("name", CAUSAL)
def test_bad_input_errors(name):
    layer = causal_layers(context_length=5)[name]
    with pytest.raises(ValueError, match=r"6 tokens exceed context_length=5"):
        layer(randn(1, 6, 4))
    with pytest.raises(ValueError, match=r"d_in=4, got shape \(1, 3, 5\)"):
        layer(randn(1, 3, 5))
    with pytest.raises(ValueError, match=r"\(batch, num_tokens, d_in\) with d_in=4, got shape \(3, 4\)"):
        layer(randn(3, 4))
    with pytest.raises(ValueError, match=r"attention_mask must have the input's shape .*\(2, 3\), got \(2, 4\)"):
        layer(randn(2, 3, 4), attention_mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"got \(3,\)"):
        layer(randn(2, 3, 4), attention_mask=np.ones(3))
    with pytest.raises(ValueError, match=r"1 for real tokens and 0 for padding, got the values \[2\]"):
        layer(randn(2, 3, 4), attention_mask=np.array([[1, 1, 2], [1, 1, 1]]))


def test_bad_input_errors_of_the_first_rungs():
    with pytest.raises(ValueError, match=r"\(num_tokens, d\) or \(batch, num_tokens, d\), got shape \(3,\)"):
        simple_self_attention(randn(3))
    with pytest.raises(ValueError, match=r"d_in=3, got shape \(2, 6, 4\)"):
        SelfAttention_v1(3, 2)(randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"\(num_tokens, d_in\) or \(batch, num_tokens, d_in\) with d_in=3"):
        SelfAttention_v2(3, 2)(randn(1, 2, 6, 3))


@pytest.mark.parametrize("keep", [True, False], ids=["weights kept", "weights recomputed"])
def test_a_layer_pickles_and_deep_copies_after_a_call_with_its_weights(keep, monkeypatch):
    """last_attn_weights is computed lazily from what the call kept; the layer still pickles and copies."""
    import copy
    import pickle

    from tinygrad_attn import fused
    monkeypatch.setattr(fused, "_keep", lambda *sizes: keep)
    manual_seed(0)
    layer = GroupedQueryAttention(4, 4, 8, 0.0, num_heads=2, num_kv_heads=1)
    pickle.loads(pickle.dumps(layer))  # before any call
    layer(randn(2, 5, 4))
    twin, again = copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))
    for other in (twin, again):
        np.testing.assert_array_equal(other.last_attn_weights.numpy(), layer.last_attn_weights.numpy())
    assert twin.last_attn_weights.data is not layer.last_attn_weights.data  # a copy, not shared
