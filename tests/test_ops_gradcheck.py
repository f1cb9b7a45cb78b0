"""Every differentiable op against central finite differences in float64.

tinygrad_attn.gradcheck projects each output onto a random upstream gradient, so a wrong
gradient cannot hide behind the uniform one of .sum(). Each case also asserts that some
gradient is non-zero, so no case passes by comparing zeros with zeros. The end of the file
checks the documented policies: ties in max, fully masked softmax rows, huge logits.
"""

import math
import operator

import numpy as np
import pytest

import tinygrad_attn as tg
from tinygrad_attn import Tensor, gradcheck, GradcheckError, ops


def case(id, fn, *shapes, kind="n", **opts):
    """One gradcheck: fn applied to float64 inputs of these shapes and kind (see conftest.sample);
    opts go to gradcheck."""
    return pytest.param(fn, shapes, kind, opts, id=id)


# Fixed constants (literals, so no mask is accidentally all False).
MASK = np.array([[True, False, False, True], [False, True, False, False], [True, True, False, True]])
ROW_MASK = np.array([True, False, True])
COL_MASK = np.array([False, True, True, False])
FULL_ROW_MASK = np.array([[False, True, False, True], [True, True, True, True], [False, False, False, True]])
COND = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])
IDX = np.array([[0, 2, 0], [4, 0, 1]])  # embedding lookup: row 0 used three times
TARGET = np.array([1, 0, 4, 2])

# ---------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------

BINARY = [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul), ("div", operator.truediv)]
BROADCASTS = [((3, 4), (3, 4)), ((4,), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)),
              ((2, 3, 4), (2, 1, 4)), ((2, 1, 4), (3, 1)), ((), (3, 4)), ((3, 4), ())]

CASES = [case(f"{name}-{a}-{b}", f, a, b, kind="a") for name, f in BINARY for a, b in BROADCASTS]
CASES += [case(f"{name}-transposed-lhs", lambda x, y, f=f: f(x.transpose(0, 1), y), (4, 3), (3, 4), kind="a")
          for name, f in BINARY]
CASES += [case(f"{name}-transposed-rhs", lambda x, y, f=f: f(x, y.T), (3, 4), (4, 3), kind="a")
          for name, f in BINARY]
CASES += [
    case("radd-scalar", lambda x: 2.0 + x, (3, 4)),
    case("rsub-scalar", lambda x: 1.5 - x, (3, 4)),
    case("sub-scalar", lambda x: x - 1.5, (3, 4)),
    case("rmul-scalar", lambda x: 0.5 * x, (3, 4)),
    case("div-scalar", lambda x: x / 3.0, (3, 4)),
    case("rdiv-scalar", lambda x: 3.0 / x, (3, 4), kind="a"),
    case("mul-ndarray-left", lambda x: np.arange(4.0) * x, (3, 4)),
    case("add-ndarray-right", lambda x: x + np.arange(4.0), (3, 4)),
    case("neg", lambda x: -x, (3, 4)),
]

UNARY = [("exp", lambda x: x.exp(), "n"), ("log", lambda x: x.log(), "p"), ("sqrt", lambda x: x.sqrt(), "p"),
         ("tanh", lambda x: x.tanh(), "n"), ("relu", lambda x: x.relu(), "a"), ("gelu", lambda x: x.gelu(), "n"),
         ("sigmoid", lambda x: x.sigmoid(), "n"), ("abs", lambda x: x.abs(), "a"),
         ("pow2", lambda x: x ** 2, "n"), ("pow3", lambda x: x ** 3, "n"), ("pow-1", lambda x: x ** -1, "a"),
         ("pow0.5", lambda x: x ** 0.5, "p"), ("pow2.5", lambda x: x.pow(2.5), "p"),
         ("pow-1.5", lambda x: x ** -1.5, "p")]
CASES += [case(name, f, (3, 4), kind=k) for name, f, k in UNARY]
CASES += [case(f"{name}-transposed", lambda x, f=f: f(x.transpose(0, 1)), (4, 3), kind=k) for name, f, k in UNARY]

MATMULS = [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((3, 4), (2, 4, 5)),
           ((2, 3, 4), (4, 5)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,)), ((4,), (2, 4, 3)),
           ((2, 3, 4), (4,))]
CASES += [case(f"matmul-{a}@{b}", operator.matmul, a, b) for a, b in MATMULS]
CASES += [case("matmul-transposed", lambda a, b: a.T @ b.transpose(-1, -2), (4, 3), (2, 4)),
          case("matmul-method", lambda a, b: a.matmul(b), (3, 4), (4, 2))]

REDUCE_DIMS = [None, 0, -1, (0, 2), (-1, -3), 1]
for keepdim in (False, True):
    kd = "keep" if keepdim else "drop"
    CASES += [case(f"sum-{d}-{kd}", lambda x, d=d, k=keepdim: x.sum(dim=d, keepdim=k), (2, 3, 4))
              for d in REDUCE_DIMS]
    CASES += [case(f"mean-{d}-{kd}", lambda x, d=d, k=keepdim: x.mean(dim=d, keepdim=k), (2, 3, 4))
              for d in REDUCE_DIMS]
    CASES += [case(f"var-{d}-c{c}-{kd}", lambda x, d=d, k=keepdim, c=c: x.var(dim=d, keepdim=k, correction=c),
                   (2, 3, 4)) for d in REDUCE_DIMS for c in (0, 1)]
    CASES += [case(f"max-{d}-{kd}", lambda x, d=d, k=keepdim: x.max(dim=d, keepdim=k), (2, 3, 4), kind="d")
              for d in REDUCE_DIMS]
CASES += [
    case("sum-transposed", lambda x: x.permute(2, 0, 1).sum(1), (2, 3, 4)),
    case("mean-transposed", lambda x: x.transpose(0, 1).mean(-1, keepdim=True), (3, 4)),
    case("var-transposed", lambda x: x.transpose(0, 1).var(0), (3, 4)),
    case("max-transposed", lambda x: x.transpose(0, 1).max(-1), (3, 4), kind="d"),
    case("sum-0d", lambda x: x.sum(), ()),
]

CASES += [
    case("reshape", lambda x: x.reshape(6, 4), (2, 3, 4)),
    case("reshape-tuple", lambda x: x.reshape((3, 8)), (2, 3, 4)),
    case("reshape-minus1", lambda x: x.reshape(-1), (2, 3, 4)),
    case("view", lambda x: x.view(4, -1, 2), (2, 3, 4)),
    case("reshape-transposed", lambda x: x.transpose(0, 2).reshape(-1, 2), (2, 3, 4)),
    case("flatten", lambda x: x.flatten(1), (2, 3, 4)),
    case("transpose", lambda x: x.transpose(0, 1), (2, 3, 4)),
    case("transpose-negative", lambda x: x.transpose(-1, -3), (2, 3, 4)),
    case("T", lambda x: x.T, (2, 3, 4)),
    case("permute", lambda x: x.permute(2, 0, 1), (2, 3, 4)),
    case("permute-tuple-negative", lambda x: x.permute((-1, 0, 1)), (2, 3, 4)),
    case("expand", lambda x: x.expand(2, 3, 4), (3, 1)),
    case("expand-new-dims", lambda x: x.expand((3, 4)), (4,)),
    case("expand-minus1", lambda x: x.expand(2, -1, 4), (3, 1)),
    case("expand-transposed", lambda x: x.T.expand(2, 4, 3), (3, 4)),
    case("unsqueeze0", lambda x: x.unsqueeze(0), (3, 4)),
    case("unsqueeze1", lambda x: x.unsqueeze(1), (3, 4)),
    case("unsqueeze-1", lambda x: x.unsqueeze(-1), (3, 4)),
    case("squeeze-all", lambda x: x.squeeze(), (3, 1, 4)),
    case("squeeze1", lambda x: x.squeeze(1), (3, 1, 4)),
    case("squeeze-2", lambda x: x.squeeze(-2), (3, 1, 4)),
    case("squeeze-non1", lambda x: x.squeeze(0), (3, 1, 4)),
    case("repeat_interleave-dim1", lambda x: x.repeat_interleave(2, dim=1), (2, 3)),
    case("repeat_interleave-dim0", lambda x: x.repeat_interleave(3, 0), (2, 3)),
    case("repeat_interleave-dim-1", lambda x: x.repeat_interleave(2, dim=-1), (2, 3, 2)),
    case("repeat_interleave-transposed", lambda x: x.T.repeat_interleave(2, dim=0), (2, 3)),
]

CASES += [
    case("index-int", lambda x: x[1], (3, 4)),
    case("index-negative-int", lambda x: x[-1], (3, 4)),
    case("index-slice", lambda x: x[1:3], (3, 4)),
    case("index-step", lambda x: x[::2], (3, 4)),
    case("index-reversed", lambda x: x[:, ::-1], (3, 4)),
    case("index-column", lambda x: x[:, 1], (3, 4)),
    case("index-none", lambda x: x[None, :, None], (3, 4)),
    case("index-ellipsis", lambda x: x[..., 0], (2, 3, 4)),
    case("index-int-ellipsis-none", lambda x: x[1, ..., None], (2, 3, 4)),
    case("index-scalar", lambda x: x[0, 1], (3, 4)),
    case("index-embedding", lambda w: w[IDX], (5, 3)),
    case("index-embedding-tensor", lambda w: w[Tensor(IDX)], (5, 3)),
    case("index-0d-tensor", lambda w: w[Tensor(IDX)[0, 1]], (5, 3)),
    case("index-list-repeated-columns", lambda x: x[:, [1, 1, 0]], (3, 4)),
    case("index-pairs-repeated", lambda x: x[[0, 2, 0], [1, 3, 1]], (3, 4)),
    case("index-bool-mask", lambda x: x[MASK], (3, 4)),
    case("index-bool-rows", lambda x: x[ROW_MASK], (3, 4)),
    case("index-bool-columns", lambda x: x[:, COL_MASK], (3, 4)),
    case("index-bool-tensor", lambda x: x[Tensor(MASK)], (3, 4)),
    case("index-transposed", lambda x: x.T[1:, [0, 0]], (3, 4)),
]

CASES += [
    case("cat-dim0", lambda a, b: tg.cat([a, b], dim=0), (2, 3), (4, 3)),
    case("cat-dim-1-three", lambda a, b, c: tg.cat([a, b, c], dim=-1), (2, 3), (2, 1), (2, 2)),
    case("cat-same-tensor", lambda a: tg.cat([a, a * 2.0], dim=1), (2, 3)),
    case("cat-transposed", lambda a, b: tg.cat([a.T, b], 0), (3, 2), (1, 3)),
    case("stack-dim0", lambda a, b, c: tg.stack([a, b, c]), (2, 3), (2, 3), (2, 3)),
    case("stack-dim1", lambda a, b: tg.stack([a, b], dim=1), (2, 3), (2, 3)),
    case("stack-dim-1", lambda a, b: tg.stack([a, b], dim=-1), (2, 3), (2, 3)),
    case("split-int", lambda x: tg.cat([p * (i + 1.0) for i, p in enumerate(x.split(2))]), (5, 3)),
    case("split-sizes", lambda x: tg.cat([p * (i + 1.0) for i, p in enumerate(x.split([1, 3, 1]))]), (5, 3)),
    case("split-dim-1", lambda x: tg.cat([p * (i + 1.0) for i, p in enumerate(x.split(2, dim=-1))], -1), (3, 5)),
    case("split-one-piece-used", lambda x: x.split(2)[1], (5, 3)),
    case("chunk", lambda x: tg.cat([p * (i + 1.0) for i, p in enumerate(x.chunk(2, dim=1))], 1), (3, 5)),
    case("chunk-dim0", lambda x: tg.cat([p * (i + 1.0) for i, p in enumerate(x.chunk(3))]), (4, 2)),
]

CASES += [
    case("where", lambda x, y: tg.where(COND, x, y), (3, 4), (3, 4)),
    case("where-tensor-cond", lambda x, y: tg.where(Tensor(COND), x, y), (3, 4), (3, 4)),
    case("where-broadcast", lambda x, y: tg.where(COND[:, :1], x, y), (3, 4), (4,)),
    case("where-broadcast-x", lambda x, y: tg.where(COND, x, y), (1, 4), (3, 1)),
    case("where-scalar-y", lambda x: tg.where(COND, x, 0.0), (3, 4)),
    case("where-scalar-x", lambda y: tg.where(COND, 1.0, y), (3, 4)),
    case("masked_fill", lambda x: x.masked_fill(MASK, 2.0), (3, 4)),
    case("masked_fill-tensor-mask", lambda x: x.masked_fill(Tensor(MASK), -1.0), (3, 4)),
    case("masked_fill-broadcast-row", lambda x: x.masked_fill(COL_MASK, 0.0), (3, 4)),
    case("masked_fill-broadcast-col", lambda x: x.masked_fill(ROW_MASK[:, None], 0.0), (3, 4)),
    case("masked_fill-transposed", lambda x: x.T.masked_fill(MASK, 0.0), (4, 3)),
]

SOFTMAX_DIMS = [-1, 0, 1]
CASES += [case(f"softmax-dim{d}", lambda x, d=d: x.softmax(d), (2, 3, 4)) for d in SOFTMAX_DIMS]
CASES += [case(f"log_softmax-dim{d}", lambda x, d=d: x.log_softmax(d), (2, 3, 4)) for d in SOFTMAX_DIMS]
CASES += [
    case("softmax-transposed", lambda x: x.T.softmax(-1), (3, 4)),
    case("log_softmax-transposed", lambda x: x.T.log_softmax(-1), (3, 4)),
    case("softmax-masked", lambda x: x.masked_fill(MASK, float("-inf")).softmax(-1), (3, 4)),
    case("softmax-fully-masked-row", lambda x: x.masked_fill(FULL_ROW_MASK, float("-inf")).softmax(-1), (3, 4)),
    case("log_softmax-masked", lambda x: x.masked_fill(MASK, -1e9).log_softmax(-1)[~MASK], (3, 4)),
    case("softmax-large", lambda x: (x * 100.0).softmax(-1), (3, 4)),
]


def dropout_fixed_mask(x, p):
    tg.manual_seed(7)  # the same mask on every call, so finite differences see one function
    return x.dropout(p)


CASES += [
    case("dropout-0.3", lambda x: dropout_fixed_mask(x, 0.3), (3, 4)),
    case("dropout-0.5", lambda x: dropout_fixed_mask(x, 0.5), (2, 3, 4)),
    case("dropout-eval", lambda x: x.dropout(0.5, training=False) * 1.0, (3, 4)),
    case("dropout-p0", lambda x: x.dropout(0.0) * 1.0, (3, 4)),
    # float32 rounding is the only error of this linear op: a wide step and a coarser tolerance.
    case("cast-float-double", lambda x: (x.float() * 3.0).double(), (3, 4), eps=1e-2, atol=1e-4, rtol=1e-4),
    case("cast-to", lambda x: x.to(np.float32).to(np.float64) * x, (3, 4), eps=1e-2, atol=1e-4, rtol=1e-4),
]

for reduction in ("mean", "sum", "none"):
    CASES += [
        case(f"cross_entropy-{reduction}", lambda z, r=reduction: ops.CrossEntropy.apply(
            z, target=TARGET, ignore_index=-100, reduction=r), (4, 5)),
        case(f"cross_entropy-{reduction}-ignore", lambda z, r=reduction: ops.CrossEntropy.apply(
            z, target=TARGET, ignore_index=4, reduction=r), (4, 5)),
        case(f"cross_entropy-{reduction}-repeated-target", lambda z, r=reduction: ops.CrossEntropy.apply(
            z, target=np.array([2, 2, 2, 0]), ignore_index=0, reduction=r), (4, 5)),
    ]
CASES += [
    case("cross_entropy-transposed", lambda z: ops.CrossEntropy.apply(
        z.T, target=TARGET, ignore_index=-100, reduction="mean"), (5, 4)),
    case("layer_norm", lambda x: ops.LayerNorm.apply(x, ndims=1, eps=1e-5), (3, 4)),
    case("layer_norm-ndims2", lambda x: ops.LayerNorm.apply(x, ndims=2, eps=1e-5), (2, 3, 4)),
    case("layer_norm-big-eps", lambda x: ops.LayerNorm.apply(x, ndims=1, eps=0.5), (3, 4)),
    case("layer_norm-transposed", lambda x: ops.LayerNorm.apply(x.T, ndims=1, eps=1e-5), (4, 3)),
    case("attention", lambda q, k, v: (q @ k.T / 2.0).masked_fill(~np.tri(3, dtype=bool), float("-inf"))
         .softmax(-1) @ v, (3, 4), (3, 4), (3, 2)),
    case("reused-nonleaf", lambda x: (lambda y: y * y)(x + x), (3, 4)),
]


@pytest.mark.parametrize("fn, shapes, kind, opts", CASES)
def test_gradcheck(fn, shapes, kind, opts, sample):
    inputs = [Tensor(sample(s, kind), requires_grad=True, dtype=tg.float64) for s in shapes]
    assert gradcheck(fn, inputs, **opts)
    assert fn(*inputs).dtype == tg.float64
    assert any(np.any(x.grad != 0) for x in inputs), "every input got a zero gradient: the case tests nothing"


def test_dropout_p1_gradient_is_zero():
    x = Tensor(np.ones((3, 4)), requires_grad=True, dtype=tg.float64)
    assert gradcheck(lambda t: dropout_fixed_mask(t, 1.0), [x])
    assert np.all(x.grad == 0) and np.all(dropout_fixed_mask(x, 1.0).data == 0)


def test_all_ignored_cross_entropy_mean_is_zero_with_zero_gradient():
    """Documented policy (PyTorch gives NaN): every target ignored -> loss 0, gradient 0."""
    z = Tensor(np.arange(10.0).reshape(2, 5), requires_grad=True, dtype=tg.float64)
    loss = ops.CrossEntropy.apply(z, target=np.array([3, 3]), ignore_index=3, reduction="mean")
    loss.backward()
    assert loss.item() == 0.0
    assert np.all(z.grad == 0)


# ---------------------------------------------------------------------------------------
# max: the tie rule (documented: tied maxima share the gradient equally)
# ---------------------------------------------------------------------------------------

def test_max_ties_share_gradient_equally():
    x = Tensor([1.0, 3.0, 3.0, 2.0, 3.0], requires_grad=True, dtype=tg.float64)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0, 1 / 3, 1 / 3, 0, 1 / 3])


@pytest.mark.parametrize("keepdim", [False, True])
def test_max_ties_per_row(keepdim):
    x = Tensor([[5.0, 5.0, 1.0], [0.0, 2.0, 1.0], [7.0, 7.0, 7.0]], requires_grad=True, dtype=tg.float64)
    out = x.max(dim=-1, keepdim=keepdim)
    out.backward(gradient=np.array([2.0, 3.0, 6.0]).reshape(out.shape))
    np.testing.assert_array_equal(x.grad, [[1, 1, 0], [0, 3, 0], [2, 2, 2]])


# ---------------------------------------------------------------------------------------
# Numerical stability: huge logits and fully masked rows
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_softmax_huge_logits(dtype):
    x = Tensor([[1e4, 1e4 - 1.0, 0.0], [-1e4, -1e4, -1e4]], requires_grad=True, dtype=dtype)
    y = x.softmax(-1)
    e = math.exp(-1.0)
    np.testing.assert_allclose(y.data, [[1 / (1 + e), e / (1 + e), 0.0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    y.backward(gradient=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert np.all(np.isfinite(x.grad))
    p = 1 / (1 + e)  # d y0 / d x = y0 (delta_0j - y_j)
    np.testing.assert_allclose(x.grad[0], [p * (1 - p), -p * (1 - p), 0.0], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_log_softmax_huge_logits(dtype):
    x = Tensor([[1e4, 1e4 - 1.0, 0.0]], requires_grad=True, dtype=dtype)
    y = x.log_softmax(-1)
    e = math.exp(-1.0)
    lse = 1e4 + math.log1p(e)
    np.testing.assert_allclose(y.data, [[1e4 - lse, 1e4 - 1 - lse, -lse]], rtol=1e-6)
    y.backward(gradient=np.ones((1, 3)))
    assert np.all(np.isfinite(x.grad))
    p = np.array([1.0, e, 0.0]) / (1 + e)  # softmax
    np.testing.assert_allclose(x.grad, [1 - 3 * p], rtol=1e-5, atol=1e-6)  # g_j - softmax_j * sum_i g_i


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_huge_logits(dtype, reduction):
    z = Tensor([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]], requires_grad=True, dtype=dtype)
    loss = ops.CrossEntropy.apply(z, target=np.array([0, 1]), ignore_index=-100, reduction=reduction)
    per_row = np.array([0.0, 1e4])  # -log p: p(target 0) = 1, p(target 1) = e^-1e4
    expected = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    np.testing.assert_allclose(loss.data, expected, rtol=1e-6)
    loss.backward(gradient=np.ones(loss.shape))
    assert np.all(np.isfinite(loss.data)) and np.all(np.isfinite(z.grad))
    scale = 0.5 if reduction == "mean" else 1.0
    np.testing.assert_allclose(z.grad, scale * np.array([[0.0, 0, 0], [1, -1, 0]]), atol=1e-6)


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_fully_masked_softmax_row_is_zero_without_nan(dtype):
    """Documented policy: a row where every key is masked gives zeros and a zero gradient."""
    x = Tensor(np.arange(8.0).reshape(2, 4), requires_grad=True, dtype=dtype)
    mask = np.array([[False, True, False, True], [True, True, True, True]])
    y = x.masked_fill(mask, float("-inf")).softmax(-1)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.data[1], 0.0)
    np.testing.assert_allclose(y.data[0], [1 / (1 + math.exp(2)), 0, math.exp(2) / (1 + math.exp(2)), 0], rtol=1e-6)
    y.backward(gradient=np.arange(8.0).reshape(2, 4))
    assert not np.any(np.isnan(x.grad))
    np.testing.assert_array_equal(x.grad[1], 0.0)
    np.testing.assert_array_equal(x.grad[0, [1, 3]], 0.0)


def test_fully_masked_log_softmax_row_stays_minus_inf():
    x = Tensor(np.zeros((1, 3)), requires_grad=True, dtype=tg.float64)
    y = x.masked_fill(np.ones((1, 3), bool), float("-inf")).log_softmax(-1)
    assert np.all(y.data == -np.inf)
    y.backward(gradient=np.ones((1, 3)))
    np.testing.assert_array_equal(x.grad, 0.0)


# ---------------------------------------------------------------------------------------
# gradcheck itself must catch a wrong gradient, or every test above proves nothing
# ---------------------------------------------------------------------------------------

class _WrongSquare(tg.Function):
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g):  # wrong on purpose: d(x^2)/dx is 2x, not x
        return (g * self.x,)


class _UniformlyRightSquare(tg.Function):
    """Right for a uniform upstream gradient only: sums g first. .sum() would hide it."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g):
        return (np.full_like(g, g.mean()) * 2 * self.x,)


def test_gradcheck_catches_wrong_gradient():
    x = Tensor(np.linspace(0.5, 2.0, 6).reshape(2, 3), requires_grad=True, dtype=tg.float64)
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(2, 3\)\) is wrong at 6 of 6 elements"):
        gradcheck(_WrongSquare.apply, [x])
    assert gradcheck(_WrongSquare.apply, [x], raise_exception=False) is False


def test_gradcheck_uses_random_upstream_gradient():
    x = Tensor(np.linspace(0.5, 2.0, 6).reshape(2, 3), requires_grad=True, dtype=tg.float64)
    x.grad = None
    _UniformlyRightSquare.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)  # the uniform gradient cannot tell
    with pytest.raises(GradcheckError):
        gradcheck(_UniformlyRightSquare.apply, [x])


def test_gradcheck_refuses_float32_and_no_grad_inputs():
    with pytest.raises(TypeError, match="float32"):
        gradcheck(lambda t: t * 2.0, [Tensor(np.ones(3), requires_grad=True)])
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda t: t * 2.0, [Tensor(np.ones(3), dtype=tg.float64)])
