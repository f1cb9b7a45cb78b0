"""nn.functional: gradients by finite differences, parity with torch.nn.functional, and the errors."""

import numpy as np
import pytest

from tinygrad_attn import Tensor, gradcheck, manual_seed
from tinygrad_attn.nn import functional as F


def randn(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def leaf(*shape, seed=0):
    """A float64 Tensor that requires a gradient, for gradcheck."""
    return Tensor(randn(*shape, seed=seed), requires_grad=True, dtype=np.float64)


def re_shape(shape):
    """A shape as a regex that matches its repr."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def some_true_mask(shape, seed=0):
    """A random boolean mask in which every query row keeps at least one key (column 0)."""
    mask = np.random.default_rng(seed).random(shape) < 0.6
    mask[..., 0] = True
    return mask


# ---------------------------------------------------------------------------------------
# Gradients by finite differences (float64)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("normalized_shape", [4, (3, 4)])
def test_layer_norm_gradcheck(normalized_shape):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    x, w, b = leaf(2, 3, 4), leaf(*ns, seed=1), leaf(*ns, seed=2)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, normalized_shape, w, b), [x, w, b])
    assert gradcheck(lambda x: F.layer_norm(x, normalized_shape), [x])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck_2d_with_ignore_index(reduction):
    target = np.array([0, 3, -100, 2, 3])
    fn = lambda x: F.cross_entropy(x, target, reduction=reduction)  # noqa: E731
    assert gradcheck(fn, [leaf(5, 4)])
    # an ignored row gets no gradient
    x = leaf(5, 4)
    fn(x).backward(gradient=np.ones(5) if reduction == "none" else None)
    assert np.all(x.grad[2] == 0) and np.all(x.grad[[0, 1, 3, 4]] != 0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck_nc_d_layout(reduction):
    target = np.array([[0, 2, 1], [1, 1, 0]])  # (N, d)
    assert gradcheck(lambda x: F.cross_entropy(x, target, ignore_index=1, reduction=reduction), [leaf(2, 3, 3)])
    assert gradcheck(lambda x: F.cross_entropy(x, target, reduction=reduction), [leaf(2, 3, 3, seed=1)])


def test_cross_entropy_gradcheck_single_sample():
    assert gradcheck(lambda x: F.cross_entropy(x, np.array(2)), [leaf(5)])


SDPA_CASES = {
    "plain": dict(),
    "is_causal": dict(is_causal=True),
    "bool_mask": dict(attn_mask=some_true_mask((3, 4))),
    "float_mask": dict(attn_mask=randn(2, 3, 4, seed=9)),
    "scale": dict(scale=0.3),
    "gqa_causal": dict(enable_gqa=True, is_causal=True),
}


@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_gradcheck(case):
    kwargs = SDPA_CASES[case]
    hk = 1 if kwargs.get("enable_gqa") else 2
    q, k, v = leaf(1, 2, 3, 5), leaf(1, hk, 4, 5, seed=1), leaf(1, hk, 4, 3, seed=2)
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kwargs), [q, k, v])


# ---------------------------------------------------------------------------------------
# Parity with torch.nn.functional, forward and backward
# ---------------------------------------------------------------------------------------

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


def check_parity(ours_fn, torch_fn, arrays, dtype, grad=None):
    """Run both on the same inputs, project the output onto a random tensor, compare outputs and grads.

    arrays: numpy inputs; those with grad[i] True become leaves that require a gradient.
    """
    torch = pytest.importorskip("torch")
    grad = [True] * len(arrays) if grad is None else grad
    ours = [Tensor(a, requires_grad=g, dtype=dtype) for a, g in zip(arrays, grad)]
    theirs = [torch.tensor(a.astype(dtype), requires_grad=g) for a, g in zip(arrays, grad)]
    out, expected = ours_fn(*ours), torch_fn(*theirs)
    assert out.shape == tuple(expected.shape) and out.dtype == dtype
    np.testing.assert_allclose(out.data, expected.detach().numpy(), **TOL[dtype])
    u = randn(*out.shape, seed=42, dtype=dtype)
    out.backward(gradient=u)
    expected.backward(torch.from_numpy(u))
    for i, (o, t) in enumerate(zip(ours, theirs)):
        if grad[i]:
            assert o.grad is not None and o.grad.dtype == dtype, f"input {i}"
            np.testing.assert_allclose(o.grad, t.grad.numpy(), err_msg=f"gradient of input {i}", **TOL[dtype])


DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


@DTYPES
@pytest.mark.parametrize("x_shape,bias", [((4, 3), True), ((2, 4, 3), True), ((2, 4, 3), False)])
def test_linear_matches_torch(dtype, x_shape, bias):
    torch = pytest.importorskip("torch")
    arrays = [randn(*x_shape), randn(5, 3, seed=1)] + ([randn(5, seed=2)] if bias else [])
    check_parity(F.linear, torch.nn.functional.linear, arrays, dtype)


@DTYPES
@pytest.mark.parametrize("normalized_shape,affine", [((6,), True), ((3, 6), True), ((6,), False)])
def test_layer_norm_matches_torch(dtype, normalized_shape, affine):
    torch = pytest.importorskip("torch")
    arrays = [randn(2, 3, 6) * 2 + 0.5] + ([randn(*normalized_shape, seed=1), randn(*normalized_shape, seed=2)]
                                           if affine else [])
    check_parity(lambda x, *wb: F.layer_norm(x, normalized_shape, *wb, eps=1e-4),
                 lambda x, *wb: torch.nn.functional.layer_norm(x, normalized_shape, *wb, eps=1e-4), arrays, dtype)


CE_CASES = {
    "2d": (randn(6, 5), np.array([0, 4, 2, 2, 1, 3]), {}),
    "2d_ignore_default": (randn(6, 5), np.array([0, -100, 2, -100, 1, 3]), {}),
    "2d_ignore_index": (randn(6, 5), np.array([0, 4, 2, 2, 1, 2]), dict(ignore_index=2)),
    "3d": (randn(2, 5, 4), np.array([[0, 4, 2, 3], [1, 1, -100, 0]]), {}),
    "4d": (randn(2, 3, 2, 2), np.array([[[0, 1], [2, 0]], [[1, 1], [2, 2]]]), dict(ignore_index=0)),
    "single": (randn(5), np.array(3), {}),
}


@DTYPES
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(CE_CASES))
def test_cross_entropy_matches_torch(dtype, reduction, case):
    torch = pytest.importorskip("torch")
    logits, target, kwargs = CE_CASES[case]
    check_parity(lambda x: F.cross_entropy(x, target, reduction=reduction, **kwargs),
                 lambda x: torch.nn.functional.cross_entropy(x, torch.from_numpy(target), reduction=reduction,
                                                             **kwargs),
                 [logits * 2], dtype)


def test_cross_entropy_all_ignored_is_zero_not_nan():
    """Documented policy (ops.CrossEntropy): PyTorch gives NaN here, we give 0 and a zero gradient."""
    x = leaf(3, 4)
    loss = F.cross_entropy(x, np.array([-100, -100, -100]))
    assert loss.item() == 0
    loss.backward()
    np.testing.assert_array_equal(x.grad, 0)


def sdpa_shapes(L, S, hq=2, hk=2, e=8, ev=6, batch=2):
    return [randn(batch, hq, L, e, seed=1), randn(batch, hk, S, e, seed=2), randn(batch, hk, S, ev, seed=3)]


SDPA_PARITY = {
    "plain": (3, 5, {}),
    "causal_square": (5, 5, dict(is_causal=True)),
    "causal_L_lt_S": (3, 5, dict(is_causal=True)),  # PyTorch aligns it top-left
    "causal_L_gt_S": (5, 3, dict(is_causal=True)),
    "bool_mask_2d": (4, 5, dict(mask=("bool", (4, 5)))),
    "bool_mask_4d": (4, 5, dict(mask=("bool", (2, 1, 4, 5)))),
    "float_mask": (4, 5, dict(mask=("float", (2, 2, 4, 5)))),
    "float_mask_neg_inf": (4, 5, dict(mask=("-inf", (4, 5)))),
    "scale": (4, 5, dict(scale=0.125)),
    "gqa": (4, 5, dict(hq=4, hk=2, enable_gqa=True)),
    "gqa_causal_scale": (4, 4, dict(hq=6, hk=2, enable_gqa=True, is_causal=True, scale=0.5)),
    "gqa_mask": (4, 5, dict(hq=4, hk=1, enable_gqa=True, mask=("bool", (4, 5)))),
    "dropout_p_0": (3, 5, dict(dropout_p=0.0)),
}


def make_mask(kind, shape, dtype):
    if kind == "bool":
        return some_true_mask(shape, seed=5)
    if kind == "float":
        return randn(*shape, seed=6, dtype=dtype)
    return np.where(some_true_mask(shape, seed=7), 0.0, -np.inf).astype(dtype)


@DTYPES
@pytest.mark.parametrize("case", list(SDPA_PARITY))
def test_sdpa_matches_torch(dtype, case):
    torch = pytest.importorskip("torch")
    L, S, kwargs = SDPA_PARITY[case]
    kwargs = dict(kwargs)
    arrays = sdpa_shapes(L, S, hq=kwargs.pop("hq", 2), hk=kwargs.pop("hk", 2))
    mask = kwargs.pop("mask", None)
    if mask is not None:
        mask = make_mask(*mask, dtype)
        kwargs["attn_mask"] = mask
    check_parity(lambda q, k, v: F.scaled_dot_product_attention(
                     q, k, v, **dict(kwargs, attn_mask=None if mask is None else Tensor(mask, dtype=mask.dtype))),
                 lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
                     q, k, v, **dict(kwargs, attn_mask=None if mask is None else torch.from_numpy(mask))),
                 arrays, dtype)


def test_sdpa_is_causal_aligns_top_left_and_causal_mask_bottom_right():
    q, k, v = (Tensor(a) for a in sdpa_shapes(2, 4, batch=1))
    top_left = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    explicit = F.scaled_dot_product_attention(q, k, v, attn_mask=np.tril(np.ones((2, 4), dtype=bool)))
    np.testing.assert_array_equal(top_left.data, explicit.data)
    # query 0 sees key 0 only: its output is exactly value row 0
    np.testing.assert_allclose(top_left.data[..., 0, :], v.data[..., 0, :], rtol=1e-6)
    # causal_mask(L, S) puts the queries at the last positions: the last query sees every key
    bottom_right = F.scaled_dot_product_attention(q, k, v, attn_mask=F.causal_mask(2, 4))
    full = F.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(bottom_right.data[..., -1, :], full.data[..., -1, :], rtol=1e-6)
    assert not np.allclose(bottom_right.data[..., 0, :], top_left.data[..., 0, :])


def test_sdpa_gqa_uses_repeat_interleave_order():
    q, k, v = sdpa_shapes(3, 4, hq=4, hk=2)
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), enable_gqa=True).data
    # query heads 0, 1 share key/value head 0; heads 2, 3 share head 1
    for h, kv in enumerate([0, 0, 1, 1]):
        ref = F.scaled_dot_product_attention(Tensor(q[:, h]), Tensor(k[:, kv]), Tensor(v[:, kv])).data
        np.testing.assert_allclose(out[:, h], ref, rtol=1e-6)


def test_sdpa_dropout_zeroes_some_weights_and_keeps_expectation():
    manual_seed(0)
    q, k = Tensor(np.zeros((1, 1, 400, 4))), Tensor(np.zeros((1, 1, 4, 4)))
    v = Tensor(np.eye(4)[None, None])
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.25).data  # weights are all 1/4
    np.testing.assert_allclose(np.unique(out), [0, 1 / 3], rtol=1e-6)  # dropped, or 1/4 scaled by 1/(1-p)
    assert abs((out == 0).mean() - 0.25) < 0.05


# ---------------------------------------------------------------------------------------
# Fully masked rows: zeros, not NaN (documented in F.scaled_dot_product_attention)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_fully_masked_row_gives_zeros_and_finite_gradients(kind):
    # left padding (key 0 is padding) + causal: query 0 may see nothing
    allowed = np.tril(np.ones((3, 3), dtype=bool)) & np.array([False, True, True])
    mask = allowed if kind == "bool" else np.where(allowed, 0.0, -np.inf)
    q, k, v = leaf(1, 2, 3, 4), leaf(1, 2, 3, 4, seed=1), leaf(1, 2, 3, 4, seed=2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert not np.isnan(out.data).any()
    np.testing.assert_array_equal(out.data[..., 0, :], 0)
    assert np.all(out.data[..., 1:, :] != 0)
    out.backward(gradient=randn(1, 2, 3, 4, seed=3))
    for t in (q, k, v):
        assert np.isfinite(t.grad).all()
    np.testing.assert_array_equal(q.grad[..., 0, :], 0)  # the masked query has no influence
    np.testing.assert_array_equal(v.grad[..., 0, :], 0)  # nor has the padded key
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), [q, k, v])


# ---------------------------------------------------------------------------------------
# Errors name the shapes and values at fault
# ---------------------------------------------------------------------------------------

def test_linear_wrong_width():
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\) has last dim 5.*weight \(3, 4\) expects 4"):
        F.linear(Tensor(np.zeros((2, 5))), Tensor(np.zeros((3, 4))))


@pytest.mark.parametrize("target,bad", [([0, 5, 1], 5), ([0, -1, 1], -1), ([0, 7, -100], 7)])
def test_cross_entropy_target_out_of_range(target, bad):
    with pytest.raises(ValueError, match=rf"target value {bad} is out of range for 5 classes"):
        F.cross_entropy(Tensor(np.zeros((3, 5))), np.array(target))


def test_cross_entropy_ignore_index_may_be_any_value():
    loss = F.cross_entropy(Tensor(np.zeros((2, 4))), np.array([-1, 2]), ignore_index=-1)
    np.testing.assert_allclose(loss.item(), np.log(4), rtol=1e-6)


@pytest.mark.parametrize("shape,target_shape,expected", [
    ((4, 3), (4, 1), (4,)), ((4, 3), (3,), (4,)), ((4, 3, 2), (4, 3), (4, 2)), ((4, 3, 2), (4,), (4, 2)),
    ((5,), (1,), ())])
def test_cross_entropy_wrong_target_shape(shape, target_shape, expected):
    with pytest.raises(ValueError, match=rf"input of shape {re_shape(shape)} needs target of shape "
                                         rf"{re_shape(expected)}, got {re_shape(target_shape)}"):
        F.cross_entropy(Tensor(np.zeros(shape)), np.zeros(target_shape, dtype=np.int64))


def test_cross_entropy_float_targets():
    with pytest.raises(TypeError, match="integer class indices, got dtype float32"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), Tensor([0.0, 1.0]))


def test_cross_entropy_bad_reduction():
    with pytest.raises(ValueError, match="got 'avg'"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 1]), reduction="avg")


def qkv(L=3, S=5, hq=2, hk=2, e=4):
    return Tensor(np.zeros((1, hq, L, e))), Tensor(np.zeros((1, hk, S, e))), Tensor(np.zeros((1, hk, S, e)))


@pytest.mark.parametrize("mask_shape", [(3, 4), (5, 3), (3, 2, 3, 5), (2, 2, 3, 5)])
@pytest.mark.parametrize("dtype", [bool, np.float32])
def test_sdpa_mask_that_does_not_broadcast(mask_shape, dtype):
    with pytest.raises(ValueError, match=rf"attn_mask of shape {re_shape(mask_shape)} does not broadcast.*"
                                         r"L=3, S=5"):
        F.scaled_dot_product_attention(*qkv(), attn_mask=np.zeros(mask_shape, dtype=dtype))


def test_sdpa_mismatched_dims():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"query \(1, 2, 3, 4\) and key \(1, 2, 5, 6\)"):
        F.scaled_dot_product_attention(q, Tensor(np.zeros((1, 2, 5, 6))), v)
    with pytest.raises(ValueError, match=r"value \(1, 2, 4, 4\)"):
        F.scaled_dot_product_attention(q, k, Tensor(np.zeros((1, 2, 4, 4))))
    with pytest.raises(ValueError, match=r"one rank >= 2.*\(2, 3, 4\)"):
        F.scaled_dot_product_attention(q, Tensor(np.zeros((2, 3, 4))), v)


def test_sdpa_gqa_heads_must_divide():
    with pytest.raises(ValueError, match="3 query heads must be a multiple of 2 key heads"):
        F.scaled_dot_product_attention(*qkv(hq=3, hk=2), enable_gqa=True)
    q, k, _ = qkv(hq=4, hk=2)
    with pytest.raises(ValueError, match=r"value has 1\)"):
        F.scaled_dot_product_attention(q, k, Tensor(np.zeros((1, 1, 5, 4))), enable_gqa=True)


def test_sdpa_attn_mask_and_is_causal_together():
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(*qkv(), attn_mask=np.ones((3, 5), dtype=bool), is_causal=True)


@pytest.mark.parametrize("normalized_shape", [5, (2, 4), (1, 2, 3, 4)])
def test_layer_norm_shape_mismatch(normalized_shape):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    with pytest.raises(ValueError, match=rf"layer_norm over {re_shape(ns)}: input of shape \(2, 3, 4\)"):
        F.layer_norm(Tensor(np.zeros((2, 3, 4))), normalized_shape)
