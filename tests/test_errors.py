"""Bad input raises ValueError/TypeError at the call that made the mistake, naming the shapes or values."""

import re

import numpy as np
import pytest

import tinygrad_attn as tg
from tinygrad_attn import Tensor


def t(*shape):
    return Tensor(np.zeros(shape), requires_grad=True)


def raises(exc, text):
    """pytest.raises matching `text` literally (the messages are full of parentheses)."""
    return pytest.raises(exc, match=re.escape(text))


# ---------------------------------------------------------------------------------------
# Shapes that do not fit
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, text", [
    ((3, 4), (5, 2), "(3, 4) @ (5, 2) (4 != 5)"),
    ((2, 3, 4), (3,), "(2, 3, 4) @ (3,) (4 != 3)"),
    ((4,), (3, 2), "(4,) @ (3, 2) (4 != 3)"),
    ((4,), (5,), "(4,) @ (5,) (4 != 5)"),
])
def test_matmul_inner_dims(a, b, text):
    with raises(ValueError, text):
        t(*a) @ t(*b)


def test_matmul_batch_dims_and_scalars():
    with raises(ValueError, "matmul (batch dims): shapes (2,) and (3,) do not broadcast"):
        t(2, 3, 4) @ t(3, 4, 5)
    with raises(ValueError, "at least 1 dim, got shapes () and (3,)"):
        t() @ t(3)


@pytest.mark.parametrize("op, name", [
    (lambda a, b: a + b, "add"), (lambda a, b: a - b, "sub"), (lambda a, b: a * b, "mul"),
    (lambda a, b: a / b, "div"), (lambda a, b: b + a, "add")])
def test_binary_not_broadcastable(op, name):
    with pytest.raises(ValueError, match=rf"{name}: shapes \((3, 4|5,)\) and \((5,|3, 4)\) do not broadcast"):
        op(t(3, 4), t(5))


def test_binary_with_ndarray_not_broadcastable():
    with raises(ValueError, "add: shapes (2, 3) and (2,) do not broadcast"):
        t(2, 3) + np.ones(2)


@pytest.mark.parametrize("new, text", [
    ((4, 2), "cannot reshape a tensor of shape (2, 3) (6 elements) into (4, 2)"),
    ((-1, 4), "cannot reshape a tensor of shape (2, 3) (6 elements) into (-1, 4)"),
    ((-1, -1), "cannot reshape a tensor of shape (2, 3) (6 elements) into (-1, -1)"),
    ((0, -1), "cannot reshape a tensor of shape (2, 3) (6 elements) into (0, -1)"),
])
def test_bad_reshape(new, text):
    with raises(ValueError, text):
        t(2, 3).reshape(new)
    with raises(ValueError, text):
        t(2, 3).view(*new)


@pytest.mark.parametrize("shape, new", [
    ((3, 2), (3, 4)),  # 2 is neither 4 nor 1
    ((2, 3), (3,)),  # fewer dims than the tensor
    ((3, 1), (-1, 3, 4)),  # -1 for a new leading dim
    ((2, 1), (3, 1)),
])
def test_bad_expand(shape, new):
    with raises(ValueError, f"cannot expand a tensor of shape {shape} to {new}"):
        t(*shape).expand(*new)


def test_masked_fill_mask_not_broadcasting():
    with raises(ValueError, "masked_fill: shapes (3,) and (2, 4) do not broadcast"):
        t(2, 4).masked_fill(np.ones(3, bool), 0.0)
    with raises(ValueError, "mask of shape (2, 2, 4) does not broadcast to tensor shape (2, 4)"):
        t(2, 4).masked_fill(np.ones((2, 2, 4), bool), 0.0)


@pytest.mark.parametrize("mask", [np.ones((2, 4), int), Tensor(np.ones((2, 4))), np.ones((2, 4))])
def test_masked_fill_mask_not_bool(mask):
    dtype = mask.dtype
    with raises(TypeError, f"masked_fill needs a boolean mask, got dtype {dtype}"):
        t(2, 4).masked_fill(mask, 0.0)


@pytest.mark.parametrize("p", [-0.1, 1.5, 2])
def test_dropout_probability_out_of_range(p):
    with raises(ValueError, f"dropout probability must be in [0, 1], got {p}"):
        t(2, 3).dropout(p)
    with raises(ValueError, f"got {p}"):
        t(2, 3).dropout(p, training=False)  # a bad p is a mistake in eval mode too


@pytest.mark.parametrize("call, text", [
    (lambda x: x.sum(dim=3), "dim 3 is out of range for a tensor with 3 dims (expected [-3, 2])"),
    (lambda x: x.mean(dim=(0, -4)), "dim -4 is out of range for a tensor with 3 dims"),
    (lambda x: x.var(dim=5), "dim 5 is out of range"),
    (lambda x: x.max(dim=-4), "dim -4 is out of range"),
    (lambda x: x.softmax(3), "dim 3 is out of range"),
    (lambda x: x.log_softmax(-4), "dim -4 is out of range"),
    (lambda x: x.transpose(0, 3), "dim 3 is out of range"),
    (lambda x: x.permute(0, 1, 3), "dim 3 is out of range"),
    (lambda x: x.squeeze(3), "dim 3 is out of range"),
    (lambda x: x.unsqueeze(4), "dim 4 is out of range"),
    (lambda x: x.unsqueeze(-5), "dim -5 is out of range"),
    (lambda x: x.split(1, dim=3), "dim 3 is out of range"),
    (lambda x: x.chunk(2, dim=-4), "dim -4 is out of range"),
    (lambda x: x.repeat_interleave(2, dim=3), "dim 3 is out of range"),
    (lambda x: x.flatten(4), "dim 4 is out of range"),
    (lambda x: tg.cat([x, x], dim=3), "dim 3 is out of range"),
    (lambda x: tg.stack([x, x], dim=4), "dim 4 is out of range"),
])
def test_dim_out_of_range(call, text):
    with raises(ValueError, text):
        call(t(2, 3, 4))


def test_permute_not_a_permutation():
    with raises(ValueError, "permute needs a permutation of 3 dims, got (0, 0, 1)"):
        t(2, 3, 4).permute(0, 0, 1)
    with raises(ValueError, "permute needs a permutation of 3 dims, got (0, 1)"):
        t(2, 3, 4).permute(0, 1)


def test_split_sizes():
    with raises(ValueError, "split sizes [2, 2] do not add up to 5, the size of dim 0"):
        t(5, 3).split([2, 2])
    with raises(ValueError, "split sizes [2, 2] do not add up to 3, the size of dim -1"):
        t(5, 3).split([2, 2], dim=-1)
    with raises(ValueError, "split size must be positive, got 0"):
        t(5, 3).split(0)


def test_cat_and_stack_shapes():
    with raises(ValueError, "cat along dim 0: shapes [(2, 3), (2, 4)] differ outside that dim"):
        tg.cat([t(2, 3), t(2, 4)])
    with raises(ValueError, "shapes [(2, 3), (2, 3, 1)] differ"):
        tg.cat([t(2, 3), t(2, 3, 1)], dim=1)
    with raises(ValueError, "cat needs at least one tensor"):
        tg.cat([])
    with raises(ValueError, "stack needs tensors of one shape, got [(2, 3), (3, 2)]"):
        tg.stack([t(2, 3), t(3, 2)])


def test_where_condition_and_shapes():
    with raises(TypeError, "where needs a boolean condition, got dtype int64"):
        tg.where(np.ones(3, int), t(3), t(3))
    with raises(ValueError, "where: shapes (3,) and (4,) do not broadcast"):
        tg.where(np.ones(3, bool), t(4), 0.0)
    with raises(ValueError, "where: shapes (3,) and (2,) do not broadcast"):
        tg.where(np.ones(3, bool), t(3), t(2))


# ---------------------------------------------------------------------------------------
# Values and types that do not fit
# ---------------------------------------------------------------------------------------

def test_pow_needs_scalar_exponent():
    with raises(TypeError, "pow supports a scalar exponent only, got Tensor"):
        t(3) ** t(3)
    with raises(TypeError, "got ndarray"):
        t(3) ** np.ones(3)


def test_requires_grad_on_integers():
    with raises(TypeError, "only floating-point tensors can require gradients, got dtype int64"):
        Tensor([1, 2], requires_grad=True)
    with raises(TypeError, "got dtype bool"):
        Tensor([True]).requires_grad_()


def test_tensor_from_unsupported_data():
    with raises(TypeError, "cannot make a Tensor from data of dtype <U1"):
        Tensor(["a"])


def test_backward_gradient_shape():
    x = t(2, 3)
    with raises(ValueError, "gradient of shape (3, 2) does not match tensor shape (2, 3)"):
        (x * 2.0).backward(gradient=np.ones((3, 2)))
    with raises(RuntimeError, "got shape (2, 3)"):
        (x * 2.0).backward()


def test_item_bool_gelu():
    with raises(ValueError, "item() needs a tensor with one element, got shape (2, 3)"):
        t(2, 3).item()
    with raises(ValueError, "truth value of a tensor of shape (2, 3) is ambiguous"):
        bool(t(2, 3))
    with raises(ValueError, "only approximate='tanh' GELU is implemented, got 'none'"):
        t(2).gelu(approximate="none")
