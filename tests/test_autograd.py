"""The engine's semantics: graph walk, accumulation, freeing, no_grad, dtypes, like PyTorch."""

import sys

import numpy as np
import pytest

import tinygrad_attn as tg
from tinygrad_attn import Tensor, ops
from tinygrad_attn.engine import topological_order


@pytest.fixture(autouse=True)
def grad_mode_restored():
    """A failing no_grad test must not leave recording off for every test after it."""
    yield
    if not tg.is_grad_enabled():
        tg.engine._grad_enabled = True


def leaf(values, dtype=tg.float64):
    return Tensor(values, requires_grad=True, dtype=dtype)


# ---------------------------------------------------------------------------------------
# Fan-out: every edge counts, reused non-leaf nodes too
# ---------------------------------------------------------------------------------------

def test_x_times_x_counts_both_edges():
    x = leaf([1.0, -2.0, 3.0])
    y = x * x
    assert len(y.grad_fn.parents) == 2 and all(p is x for p in y.grad_fn.parents)  # a tuple, not a set
    y.backward(gradient=np.array([1.0, 10.0, 100.0]))
    np.testing.assert_array_equal(x.grad, [2.0, -40.0, 600.0])  # 2x * g


def test_reused_non_leaf():
    """y = x + x; z = y * y: y must receive both of z's edges before passing on to x."""
    x = leaf([1.0, 2.0])
    y = x + x
    z = y * y  # z = 4x^2, dz/dx = 8x
    z.backward(gradient=np.array([1.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [8.0, 48.0])


def test_diamond():
    """x -> a -> (b, c) -> d: a's gradient is the sum over both paths."""
    x = leaf([0.5, -1.0])
    a = x * 3.0
    b = a.exp()
    c = a.tanh()
    d = b * c + b
    d.backward(gradient=np.array([1.0, 2.0]))
    av = 3.0 * x.data
    dd_da = np.exp(av) * np.tanh(av) + np.exp(av) * (1 - np.tanh(av) ** 2) + np.exp(av)
    np.testing.assert_allclose(x.grad, np.array([1.0, 2.0]) * dd_da * 3.0, rtol=1e-12)
    assert tg.gradcheck(lambda t: (lambda a: a.exp() * a.tanh() + a.exp())(t * 3.0), [x])


def test_deep_chain_has_no_recursion_limit():
    x = leaf(1.0)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    assert len(topological_order(y)) == 1 + 2 * 10_000  # x, then a Mul and an Add per step
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001 ** 10_000, rtol=1e-9)


def test_topological_order_is_deterministic_and_inputs_first():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    h = x * w
    hx = h + x
    out = hx.sum()
    order = topological_order(out)
    assert [id(t) for t in order] == [id(x), id(w), id(h), id(hx), id(out)]  # first input walked first
    position = {id(t): i for i, t in enumerate(order)}
    for i, t in enumerate(order):
        if t.grad_fn is not None:
            assert all(position[id(p)] < i for p in t.grad_fn.parents)


def test_constants_get_no_gradient_and_no_graph():
    x = leaf([1.0, 2.0])
    c = Tensor([3.0, 4.0], dtype=tg.float64)
    assert not (c * c).requires_grad and (c * c).grad_fn is None
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


# ---------------------------------------------------------------------------------------
# Accumulation, freeing, retain_graph, zero_grad, retain_grad
# ---------------------------------------------------------------------------------------

def test_gradients_accumulate_across_graphs():
    x = leaf([1.0, 2.0])
    (x * 2.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0 + 2.0, 2.0 + 4.0])


def test_second_backward_through_freed_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x.exp() * 2.0).sum()
    y.backward()
    first = x.grad.numpy().copy()
    with pytest.raises(RuntimeError, match="freed.*retain_graph=True"):
        y.backward()
    np.testing.assert_array_equal(x.grad, first)


def test_freed_intermediate_raises_for_a_new_graph_on_top():
    x = leaf([1.0, 2.0])
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="freed"):
        (h * 2.0).sum().backward()


def test_retain_graph_backward_twice_doubles_like_pytorch():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
    y.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])
    y.backward()  # frees
    np.testing.assert_array_equal(x.grad, [6.0, 12.0])
    with pytest.raises(RuntimeError, match="freed"):
        y.backward()


def test_fan_out_and_accumulation_match_torch(torch):
    """x * x, a reused non-leaf, a diamond, two retained backward passes: the same .grad as PyTorch."""
    def program(x):
        y = x + x
        a = y * y * x  # y reused, x reused
        b = (a.exp() + a.tanh()) * a  # diamond on a
        return (b / 10.0).sum()

    values = np.array([0.3, -0.7, 0.1])
    ours = leaf(values)
    theirs = torch.tensor(values, requires_grad=True)
    for x in (ours, theirs):
        out = program(x)
        out.backward(retain_graph=True)
        out.backward()
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12)


def test_zero_grad_starts_fresh():
    x = leaf([1.0, 2.0])
    (x * 3.0).sum().backward()
    x.zero_grad()
    assert x.grad is None
    (x * 5.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 5.0])


def test_retain_grad_on_non_leaf():
    x = leaf([1.0, 2.0])
    h = (x * 3.0).retain_grad()
    other = x * 2.0
    out = (h * h + other).sum()
    out.backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data)  # d(h^2)/dh
    assert other.grad is None  # non-leaf without retain_grad keeps nothing
    np.testing.assert_array_equal(x.grad, 2 * h.data * 3.0 + 2.0)
    assert not h.is_leaf and x.is_leaf


def test_backward_of_non_scalar_needs_gradient():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"scalar output, got shape \(2,\)"):
        (x * 2.0).backward()


def test_backward_with_explicit_gradient_on_non_scalar():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    (x * x).backward(gradient=Tensor([[1.0, 0.0], [0.5, 2.0]], dtype=tg.float64))
    np.testing.assert_array_equal(x.grad, [[2.0, 0.0], [3.0, 16.0]])


def test_backward_frees_an_intermediate_once_the_walk_is_past_it_and_its_users():
    """Memory falls as backward runs: when the op that made y runs its backward, z = exp(y), which only
    the graph held, is gone (as in PyTorch); with retain_graph=True the graph keeps it."""
    import weakref
    alive = []

    class Probe(ops.Function):  # y = x; its backward looks whether z still exists
        def forward(self, x):
            return x * 1

        def backward(self, g):
            alive.append(z_ref() is not None)
            return (g,)

    for retain in (False, True):
        x = leaf([1.0, 2.0])
        z = Probe.apply(x).exp()
        z_ref, w = weakref.ref(z), z.sum()
        del z
        w.backward(retain_graph=retain)
        np.testing.assert_allclose(x.grad.numpy(), np.exp([1.0, 2.0]))
    assert alive == [False, True]


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).sum().backward()


def test_leaf_backward_on_itself():
    x = leaf(3.0)
    x.backward()
    assert x.grad == 1.0


# ---------------------------------------------------------------------------------------
# no_grad, detach, requires_grad rules
# ---------------------------------------------------------------------------------------

def test_no_grad_context_manager_builds_no_graph():
    x = leaf([1.0, 2.0])
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        y = (x * 2.0).exp().sum()
    assert tg.is_grad_enabled()
    assert y.requires_grad is False and y.grad_fn is None
    assert (x * 2.0).requires_grad  # recording is back on


def test_no_grad_decorator_builds_no_graph():
    x = leaf([1.0, 2.0])

    @tg.no_grad()
    def f(t):
        return (t * t).sum()

    y = f(x)
    assert y.requires_grad is False and y.grad_fn is None
    assert tg.is_grad_enabled()


def test_no_grad_is_reentrant():
    """A decorated function calling itself (the same no_grad object entered twice)."""
    @tg.no_grad()
    def depth(n):
        assert not tg.is_grad_enabled()
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(3) == 3
    assert tg.is_grad_enabled()
    ng = tg.no_grad()
    with ng:
        with ng:
            pass
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_no_grad_restores_after_exception():
    with pytest.raises(KeyError):
        with tg.no_grad():
            raise KeyError("boom")
    assert tg.is_grad_enabled()


@pytest.mark.parametrize("data", [[1, 2], [True, False]])
def test_integer_and_bool_tensors_cannot_require_grad(data):
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(data, requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(data).requires_grad_()


def test_cast_to_integer_leaves_the_graph():
    x = leaf([1.5, 2.5], dtype=tg.float32)
    assert not x.long().requires_grad and x.long().grad_fn is None
    assert not x.bool().requires_grad
    assert (x > 2.0).requires_grad is False


def test_detach():
    x = leaf([1.0, 2.0])
    d = x.detach()
    assert d.requires_grad is False and d.grad_fn is None
    assert np.shares_memory(d.data, x.data)
    (x * d).sum().backward()  # d is a constant: d(x * d)/dx = d
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])


def test_requires_grad_propagates_and_int_factories():
    assert tg.randn(2, 3, requires_grad=True).requires_grad
    assert tg.randint(0, 5, 3).dtype == tg.int64
    assert tg.zeros(2, dtype=tg.float64).dtype == tg.float64
    assert Tensor([1.0]).dtype == tg.float32  # floats default to float32, as in PyTorch


# ---------------------------------------------------------------------------------------
# Gradient dtypes and storage
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_gradient_dtype_matches_through_an_attention_block(dtype, rng, check_graph_dtype):
    x = leaf(rng.standard_normal((2, 3, 4)), dtype)  # (B, T, C)
    w = leaf(rng.standard_normal((4, 4)), dtype)
    bias = leaf(np.ones(5), dtype)
    h = ops.LayerNorm.apply(x, ndims=1, eps=1e-5)
    q = h @ w  # (B, T, C)
    att = (q @ q.transpose(-1, -2) / 2.0).masked_fill(~np.tri(3, dtype=bool), float("-inf")).softmax(-1)  # (B, T, T)
    y = (att @ h).gelu().sigmoid() ** 2 - h.var(-1, keepdim=True) + h.max(-1, keepdim=True) * (x * x + 1.0).sqrt()
    tg.manual_seed(0)
    y = tg.cat([y, y.dropout(0.1)], dim=-1).relu().tanh().exp().log_softmax(-1)  # (B, T, 2C)
    logits = y.reshape(6, 8)[:, :5] + tg.where(np.eye(6, 5, dtype=bool), 1.0, bias)  # (B*T, 5)
    loss = ops.CrossEntropy.apply(logits, target=np.array([0, 1, 2, 3, 4, 0]), ignore_index=1, reduction="mean")
    loss = loss + x.mean() * 0.5 - (w / 3.0).sum() * 1e-3
    check_graph_dtype(loss, dtype)  # float32 stays float32 in every node, forward and backward
    loss.backward()
    for t in (x, w, bias):
        assert t.grad.dtype == dtype and t.grad.shape == t.shape
        assert np.all(np.isfinite(t.grad))


def test_float32_with_python_and_numpy_scalars_stays_float32():
    x = leaf([1.0, 2.0], dtype=tg.float32)
    mask = np.array([True, False])
    for y in (x * 2.5, x + np.float64(1.0), x ** 2, x ** np.float64(2.0), x ** np.int64(3), 1.0 / x,
              x - np.array([1.0, 2.0]), tg.where(mask, x, 0.5), x.masked_fill(mask, 1e-3)):
        assert y.dtype == tg.float32
        y.sum().backward()
        assert x.grad.dtype == tg.float32
        x.zero_grad()


class _Probe(tg.Function):
    """The identity, recording the dtype of the gradient the engine hands it."""
    seen = []

    def forward(self, x):
        return x

    def backward(self, g):
        self.seen.append(g.dtype)
        return (g,)


def test_engine_hands_each_node_a_gradient_of_its_dtype():
    """float32 * float64 gives a float64 result; the gradient flowing back into the float32 part
    must be float32 again (as in PyTorch), not drag the rest of the backward pass into float64."""
    x = leaf([1.0, 2.0], dtype=tg.float32)
    h = _Probe.apply(x * 2.0)
    y = h * Tensor([3.0, 4.0], dtype=tg.float64)
    assert y.dtype == tg.float64
    _Probe.seen.clear()
    y.sum().backward()
    assert _Probe.seen == [tg.float32]
    assert x.grad.dtype == tg.float32


def test_cast_gradient_returns_to_input_dtype():
    x = leaf([1.0, 2.0], dtype=tg.float32)
    y = x.double() * Tensor([3.0, 4.0], dtype=tg.float64)
    assert y.dtype == tg.float64
    y.sum().backward()
    assert x.grad.dtype == tg.float32
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])
    z = leaf([1.0], dtype=tg.float64)
    z.float().sum().backward()
    assert z.grad.dtype == tg.float64


@pytest.mark.parametrize("make", [
    lambda x: x.sum(),  # backward is a read-only broadcast view
    lambda x: x.expand(2, 3, 3).sum(),
    lambda x: (x + x).sum(),  # Add hands the same array to both edges
    lambda x: x[0, 1] * 1.0,
])
def test_leaf_grads_are_tensors_over_writeable_arrays(make):
    x = leaf(np.ones((3, 3)))
    make(x).backward()
    g = x.grad
    assert isinstance(g, Tensor) and not g.requires_grad and g.grad_fn is None  # a Tensor without a graph
    assert isinstance(g.data, np.ndarray) and g.data.flags.writeable
    before = g.numpy().copy()
    g.data *= 0.5  # an optimizer or clipping scales in place
    np.testing.assert_array_equal(x.grad, before * 0.5)


def test_retained_grad_does_not_alias_leaf_grad():
    x = leaf([1.0, 2.0])
    h = (x + 0.0).retain_grad()
    h.sum().backward()
    x.grad.data[0] = 100.0
    assert h.grad[0] == 1.0


def test_op_outputs_are_ndarrays():
    """numpy turns 0-d ufunc results into scalars; .data must stay an array (e.g. to index with it)."""
    x = leaf([1.0, 2.0])
    for t in (x.sum().exp(), x @ x, x[0], x.max() * x.mean()):
        assert isinstance(t.data, np.ndarray) and t.shape == ()
    idx = Tensor([1, 0])
    np.testing.assert_array_equal(x[idx[0]].data, 2.0)
