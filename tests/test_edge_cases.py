"""The corners a tester found (issue 15): NaN, 0-d and empty tensors, dtype promotion, bad
hyper-parameters. Each test states PyTorch 2.13's behaviour as literal values, so it runs
without torch; tests/test_differential.py checks the same ground against torch itself."""

import re
import warnings

import numpy as np
import pytest

import tinygrad_attn as tg
from tinygrad_attn import Tensor, nn, optim
from tinygrad_attn.nn import functional as F


def leaf(values, dtype=tg.float64):
    return Tensor(values, requires_grad=True, dtype=dtype)


def grad_of(fn, x, upstream=None):
    """x.grad after fn(x).backward(upstream), as a numpy array (ones if upstream is None)."""
    out = fn(x)
    out.backward(np.ones(out.shape) if upstream is None else upstream)
    return np.asarray(x.grad)


def raises(exc, text):
    return pytest.raises(exc, match=re.escape(text))


# ---------------------------------------------------------------------------------------
# NaN and inf where PyTorch gives them
# ---------------------------------------------------------------------------------------

def test_var_with_no_degrees_of_freedom_is_nan_or_inf_not_an_exception():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy says 0/0, as PyTorch warns
        one = leaf([3.0])
        assert np.isnan(one.var().item())
        assert np.isnan(grad_of(lambda x: x.var(), one)).all()  # PyTorch: [nan]
        two = leaf([1.0, 2.0])
        assert two.var(correction=2).item() == np.inf
        assert np.isinf(grad_of(lambda x: x.var(correction=2), two)).all()  # PyTorch: inf
        rows = leaf([[1.0, 2.0], [5.0, 5.0]])
        g = grad_of(lambda x: x.var(dim=1, correction=2), rows)
        np.testing.assert_array_equal(g, [[-np.inf, np.inf], [np.nan, np.nan]])  # as PyTorch's dim= form


def test_relu_propagates_nan_forward_and_backward():
    x = leaf([np.nan, 2.0, -1.0, 0.0])
    y = x.relu()
    np.testing.assert_array_equal(y.data, [np.nan, 2.0, 0.0, 0.0])
    y.backward(np.array([5.0, 5.0, 5.0, 5.0]))
    np.testing.assert_array_equal(x.grad, [5.0, 5.0, 0.0, 0.0])  # PyTorch: passes g unless x <= 0


def test_pow_zero_has_zero_gradient_at_zero():
    np.testing.assert_array_equal(grad_of(lambda x: x ** 0, leaf([0.0, 2.0])), [0.0, 0.0])
    np.testing.assert_array_equal(grad_of(lambda x: x ** 1, leaf([0.0, 2.0])), [1.0, 1.0])


# ---------------------------------------------------------------------------------------
# 0-d tensors
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn, value, grad", [
    (lambda x: x.gelu(), 0.3457140, 0.8673),  # tanh GELU of 0.5 and its slope
    (lambda x: x.softmax(0), 1.0, 0.0),
    (lambda x: x.softmax(-1), 1.0, 0.0),
    (lambda x: x.log_softmax(0), 0.0, 0.0),
    (lambda x: x.squeeze(0), 0.5, 1.0),
    (lambda x: x.squeeze(-1), 0.5, 1.0),
    (lambda x: x.transpose(0, 0), 0.5, 1.0),
    (lambda x: x.transpose(-1, 0), 0.5, 1.0),
    (lambda x: x.max(0), 0.5, 1.0),
    (lambda x: x.max(-1, keepdim=True), 0.5, 1.0),
    (lambda x: x.sum(0), 0.5, 1.0),
    (lambda x: x.mean(-1), 0.5, 1.0),
    (lambda x: x.flatten(), 0.5, 1.0),
], ids=["gelu", "softmax", "softmax-1", "log_softmax", "squeeze0", "squeeze-1", "transpose00",
        "transpose-10", "max0", "max-keep", "sum0", "mean", "flatten"])
def test_zero_dim_ops_compute_as_pytorch(fn, value, grad):
    x = leaf(0.5)
    y = fn(x)
    assert y.shape == ((1,) if fn(Tensor(0.5)).ndim else ())  # flatten gives (1,), the rest stay 0-d
    np.testing.assert_allclose(y.data.reshape(()), value, rtol=1e-5)
    y.backward(np.ones(y.shape))
    np.testing.assert_allclose(x.grad, grad, rtol=1e-3, atol=1e-12)


def test_zero_dim_ops_that_pytorch_refuses_raise_clearly():
    x = leaf(0.5)
    with raises(ValueError, "cross_entropy needs input of shape (C,), (N, C) or (N, C, d1, ...), got ()"):
        F.cross_entropy(x, Tensor(0))
    with raises(ValueError, "split needs a tensor with at least 1 dim, got a 0-d tensor"):
        x.split(1)
    with raises(ValueError, "chunk needs a tensor with at least 1 dim"):
        x.chunk(1)
    with raises(ValueError, "cat needs tensors with at least 1 dim, got shapes [(), ()] (stack joins 0-d tensors)"):
        tg.cat([x, x])
    assert tg.stack([x, x]).shape == (2,)


# ---------------------------------------------------------------------------------------
# Empty tensors
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, out", [((2, 3, 0), (0, 4), (2, 3, 4)), ((3, 1, 2), (2, 0), (3, 1, 0)),
                                       ((0, 3), (3, 2), (0, 2)), ((2, 0), (0,), (2,))])
def test_matmul_with_an_empty_dim(a, b, out):
    x, w = leaf(np.ones(a)), leaf(np.ones(b))
    y = x @ w
    assert y.shape == out and not y.data.any()  # a sum over no terms is 0
    y.backward(np.ones(out))
    assert x.grad.shape == a and w.grad.shape == b
    assert not x.grad.numpy().any() and not w.grad.numpy().any()


@pytest.mark.parametrize("shape, dim", [((2, 0), -1), ((0, 3), 0), ((0, 3), 1), ((0,), 0)])
def test_softmax_over_or_beside_an_empty_dim(shape, dim):
    for fn in (lambda x: x.softmax(dim), lambda x: x.log_softmax(dim)):
        x = leaf(np.zeros(shape))
        y = fn(x)
        assert y.shape == shape
        y.backward(np.ones(shape))
        assert x.grad.shape == shape


def test_flatten_of_an_empty_tensor():
    x = Tensor(np.zeros((0, 2, 3)))
    assert x.flatten(1).shape == (0, 6)
    assert x.flatten().shape == (0,)
    assert x.flatten(0, 1).shape == (0, 3)


def test_split_and_chunk_of_an_empty_dim_as_pytorch():
    x = Tensor(np.zeros((0, 2)))
    assert [p.shape for p in x.split(2)] == [(0, 2)]  # PyTorch: one empty piece
    assert [p.shape for p in x.chunk(3)] == [(0, 2)] * 3  # PyTorch: `chunks` empty pieces
    assert [p.shape for p in Tensor(np.zeros((2, 0))).chunk(2, dim=1)] == [(2, 0)] * 2
    assert [p.shape for p in Tensor(np.zeros(5)).chunk(4)] == [(2,), (2,), (1,)]  # as before
    with raises(ValueError, "chunks must be positive, got 0"):
        x.chunk(0)


def test_max_over_an_empty_dim_is_a_clear_error():
    with raises(ValueError, "max over an empty dim: tensor of shape (2, 0)"):
        Tensor(np.zeros((2, 0))).max(-1)
    assert Tensor(np.zeros((2, 0))).max(0).shape == (0,)  # reducing a non-empty dim is fine


@pytest.mark.parametrize("layer", [
    lambda: nn.SelfAttention_v2(4, 6),
    lambda: nn.CausalAttention(4, 6, context_length=5, dropout=0.0),
    lambda: nn.MultiHeadAttentionWrapper(4, 3, context_length=5, dropout=0.0, num_heads=2),
    lambda: nn.MultiHeadAttention(4, 6, context_length=5, dropout=0.0, num_heads=2),
    lambda: nn.GroupedQueryAttention(4, 8, context_length=5, dropout=0.0, num_heads=4, num_kv_heads=2),
], ids=["v2", "causal", "wrapper", "mha", "gqa"])
def test_every_attention_layer_works_for_no_tokens(layer):
    x = leaf(np.zeros((2, 0, 4)), dtype=tg.float32)
    out = layer()(x)
    assert out.shape[:2] == (2, 0)
    out.backward(np.ones(out.shape, np.float32))
    assert x.grad.shape == (2, 0, 4)


def test_sdpa_for_no_queries_or_no_keys():
    q = Tensor(np.zeros((1, 2, 0, 4)))
    kv = Tensor(np.zeros((1, 2, 3, 4)))
    assert F.scaled_dot_product_attention(q, kv, kv).shape == (1, 2, 0, 4)
    empty = Tensor(np.zeros((1, 2, 0, 4)))
    out = F.scaled_dot_product_attention(Tensor(np.ones((1, 2, 3, 4))), empty, empty)
    np.testing.assert_array_equal(out.data, np.zeros((1, 2, 3, 4)))  # no key at all: zeros, as PyTorch


# ---------------------------------------------------------------------------------------
# Masks: which dtypes mean what
# ---------------------------------------------------------------------------------------

def test_sdpa_refuses_an_integer_mask():
    q = Tensor(np.ones((1, 3, 4)))
    with raises(TypeError, "attn_mask must be bool (True = may attend) or floating (added to the scores), "
                           "got int64"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=Tensor(np.ones((3, 3), np.int64)))
    keep = np.tril(np.ones((3, 3), bool))
    F.scaled_dot_product_attention(q, q, q, attn_mask=keep)  # bool and float still work
    F.scaled_dot_product_attention(q, q, q, attn_mask=np.zeros((3, 3), np.float32))


# ---------------------------------------------------------------------------------------
# dtype promotion, as PyTorch
# ---------------------------------------------------------------------------------------

I = Tensor([1, 2, 3])


@pytest.mark.parametrize("fn, dtype", [
    (lambda: I + 0.5, tg.float32),
    (lambda: 0.5 * I, tg.float32),
    (lambda: I / I, tg.float32),
    (lambda: I / 2, tg.float32),
    (lambda: I.exp(), tg.float32),
    (lambda: I.sqrt(), tg.float32),
    (lambda: I ** 0.5, tg.float32),
    (lambda: I ** 2, tg.int64),
    (lambda: I * 2, tg.int64),
    (lambda: I.sum(), tg.int64),
    (lambda: I.max(), tg.int64),
    (lambda: I + True, tg.int64),
    (lambda: Tensor([True, False]) + 1, tg.int64),
    (lambda: Tensor([True, False]) * 1.5, tg.float32),
    (lambda: Tensor(1.0, dtype=tg.float64) + Tensor([1.0, 2.0]), tg.float32),  # a 0-d tensor does not win
    (lambda: Tensor([1.0, 2.0]) + Tensor([1.0, 2.0], dtype=tg.float64), tg.float64),
    (lambda: I + Tensor(1.5, dtype=tg.float64), tg.float64),  # ... unless its category is higher
    (lambda: Tensor(1) + Tensor([1.0, 2.0]), tg.float32),
    (lambda: Tensor([1.0, 2.0]) * np.float64(2.0), tg.float32),
    (lambda: tg.cat([Tensor([1.0, 2.0]), I]), tg.float32),
    (lambda: tg.cat([Tensor([1.0], dtype=tg.float64), Tensor([1.0])]), tg.float64),
    (lambda: tg.where(np.array([True, False, True]), I, 0.5), tg.float32),
    (lambda: I @ I, tg.int64),
], ids=["int+0.5", "0.5*int", "int/int", "int/2", "int.exp", "int.sqrt", "int**0.5", "int**2", "int*2",
        "int.sum", "int.max", "int+True", "bool+1", "bool*1.5", "0d-f64+f32", "f32+f64", "int+0d-f64",
        "0d-int+f32", "f32*np.float64", "cat-f32-int", "cat-f64-f32", "where-int-float", "int@int"])
def test_result_dtype_as_pytorch(fn, dtype):
    assert fn().dtype == dtype


def test_int_plus_half_computes_in_float():
    np.testing.assert_array_equal((I + 0.5).data, [1.5, 2.5, 3.5])
    np.testing.assert_array_equal((I / 2).data, [0.5, 1.0, 1.5])


def test_promotion_keeps_gradients_in_their_own_dtype():
    x = leaf(2.0, dtype=tg.float64)  # a 0-d float64 parameter scaling a float32 vector
    v = Tensor([1.0, 2.0, 3.0])
    y = x * v
    assert y.dtype == tg.float32
    y.sum().backward()
    assert x.grad.dtype == tg.float64 and x.grad.item() == 6.0


@pytest.mark.parametrize("fn, name", [
    (lambda x: x.mean(), "mean"), (lambda x: x.var(), "var"), (lambda x: x.softmax(0), "softmax"),
    (lambda x: x.log_softmax(0), "log_softmax"), (lambda x: x.gelu(), "gelu"),
    (lambda x: F.layer_norm(x, (3,)), "layer_norm"), (lambda x: x.dropout(0.5), "dropout"),
    (lambda x: F.cross_entropy(x.reshape(1, 3), Tensor([0])), "cross_entropy"),
    (lambda x: x @ Tensor([1.0, 2.0, 3.0]), "matmul"),
])
def test_integer_tensors_refused_where_pytorch_refuses(fn, name):
    with pytest.raises(TypeError, match=name):
        fn(I)


def test_matmul_refuses_an_integer_with_a_float_operand():
    with raises(TypeError, "matmul needs both operands floating or neither, got float32 and int64"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((3, 2), np.int64))
    x = Tensor(np.ones((2, 2)), dtype=tg.float64)
    assert (x @ np.ones((2, 2))).dtype == tg.float64  # a numpy array takes the tensor's dtype, as before


@pytest.mark.parametrize("dim", [(), []])
def test_sum_over_no_dims_reduces_all_as_pytorch(dim):
    x = leaf(np.arange(6.0).reshape(2, 3))
    assert x.sum(dim=dim).item() == 15.0
    assert x.mean(dim=dim).item() == 2.5
    assert x.max(dim=dim).item() == 5.0
    assert x.sum(dim=dim, keepdim=True).shape == (1, 1)


def test_tensor_copies_the_callers_array():
    arr = np.ones(3, np.float32)
    t = Tensor(arr)
    arr[0] = 5.0
    assert t.data[0] == 1.0
    shared = tg.from_numpy(arr)
    arr[1] = 7.0
    assert shared.data[1] == 7.0 and shared.dtype == tg.float32
    assert tg.from_numpy(np.ones(2)).dtype == tg.float64  # as torch.from_numpy: the array's own dtype
    assert Tensor(Tensor([1.0], dtype=tg.float64)).dtype == tg.float64  # a Tensor keeps its dtype


def test_optimizer_step_on_a_parameter_leaves_the_callers_array_alone():
    arr = np.ones(3, np.float32)
    p = nn.Parameter(arr)
    (p * 2.0).sum().backward()
    optim.SGD([p], lr=0.5).step()
    np.testing.assert_array_equal(arr, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(p.data, [0.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------
# LayerNorm of a row with a large mean
# ---------------------------------------------------------------------------------------

def test_layer_norm_of_a_constant_row_with_a_large_mean_is_zero():
    x = Tensor([[12345.678] * 3, [1.0, 2.0, 3.0]])  # float32
    out = nn.LayerNorm(3)(x)
    np.testing.assert_array_equal(out.data[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(out.data[1], [-1.2247, 0.0, 1.2247], atol=1e-4)


# ---------------------------------------------------------------------------------------
# Hyper-parameters and state that would silently ruin a run
# ---------------------------------------------------------------------------------------

def params():
    return [nn.Parameter(np.ones(2))]


@pytest.mark.parametrize("make, text", [
    (lambda v: optim.SGD(params(), lr=v), "lr must be a finite number >= 0"),
    (lambda v: optim.SGD(params(), lr=0.1, momentum=v), "momentum must be a finite number >= 0"),
    (lambda v: optim.SGD(params(), lr=0.1, weight_decay=v), "weight_decay must be a finite number >= 0"),
    (lambda v: optim.Adam(params(), lr=v), "lr must be a finite number >= 0"),
    (lambda v: optim.Adam(params(), eps=v), "eps must be a finite number >= 0"),
    (lambda v: optim.AdamW(params(), weight_decay=v), "weight_decay must be a finite number >= 0"),
    (lambda v: optim.Adam(params(), betas=(v, 0.999)), "betas must be in [0, 1)"),
    (lambda v: optim.AdamW(params(), betas=(0.9, v)), "betas must be in [0, 1)"),
])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_non_finite_or_negative_hyperparameters_refused(make, text, value):
    with raises(ValueError, text):
        make(value)


def test_clip_grad_norm_refuses_nan_or_no_norm_and_takes_inf_to_measure_without_clipping():
    for value in (float("nan"), 0.0, -1.0):
        with raises(ValueError, "max_norm must be a finite number > 0"):
            optim.clip_grad_norm_(params(), value)
    p = nn.Parameter(np.array([3.0, 4.0]))
    p.grad = Tensor(np.array([30.0, 40.0]))
    assert optim.clip_grad_norm_([p], float("inf")) == 50.0 and p.grad.tolist() == [30.0, 40.0]


def test_a_parameter_listed_twice_is_an_error():
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    with raises(ValueError, "parameter 2 is parameter 0 again: list each parameter once"):
        optim.SGD([p, q, p], lr=0.1)


@pytest.mark.parametrize("step", [-1, -5])
def test_warmup_cosine_refuses_a_negative_step(step):
    with raises(ValueError, f"step must be >= 0, got {step}"):
        optim.warmup_cosine(step, 1e-3, 10, 100)


class _Masked(nn.Module):
    def __init__(self):
        self.register_buffer("keep", Tensor(np.ones(3, bool)))
        self.register_buffer("count", Tensor(np.zeros(2, np.int64)))


def test_loading_a_float_that_is_not_0_or_1_into_a_bool_buffer_is_an_error():
    m = _Masked()
    with raises(ValueError, "keep: values [0.5] do not convert to bool exactly"):
        m.load_state_dict({"keep": np.array([1.0, 0.5, 0.0]), "count": np.zeros(2)})
    with raises(ValueError, "count: values [2.5] do not convert to int64 exactly"):
        m.load_state_dict({"keep": np.ones(3), "count": np.array([1.0, 2.5])})
    m.load_state_dict({"keep": np.array([1.0, 0.0, 1.0]), "count": np.array([3.0, 4.0])})
    np.testing.assert_array_equal(m.keep.data, [True, False, True])
    assert m.keep.dtype == tg.bool_ and m.count.data.tolist() == [3, 4]
