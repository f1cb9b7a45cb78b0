"""Every op against PyTorch, forward and backward, in float32 and float64.

Each case is written once as fn(lib, *inputs), with lib either tinygrad_attn or torch, so
both sides run the same spelling; where PyTorch names an op differently (amax, gelu's
approximate='tanh', layer_norm, cross_entropy) the case gives the torch side separately.
Both sides get the same random upstream gradient. In float32 the test also checks that no
node of our graph drifts to float64, forward or backward. Skipped where torch is missing.
"""

import operator

import numpy as np
import pytest

import tinygrad_attn as tg
from tinygrad_attn import Tensor, ops

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}

MASK = np.array([[True, False, False, True], [False, True, False, False], [True, True, False, True]])
ROW_MASK = np.array([True, False, True])
COL_MASK = np.array([False, True, True, False])
COND = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])
IDX = np.array([[0, 2, 0], [4, 0, 1]])  # embedding lookup with a repeated row
TARGET = np.array([1, 0, 4, 2])


def case(id, fn, *shapes, kind="n", torch_fn=None):
    return pytest.param(fn, torch_fn or fn, shapes, kind, id=id)


def _torch_amax(dim, keepdim):
    def f(lib, x):
        return lib.amax(x, dim=tuple(range(x.ndim)) if dim is None else dim, keepdim=keepdim)
    return f


BINARY = [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul), ("div", operator.truediv)]
BROADCASTS = [((3, 4), (3, 4)), ((4,), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 1, 4), (3, 1)), ((), (3, 4))]
CASES = [case(f"{n}-{a}-{b}", lambda lib, x, y, f=f: f(x, y), a, b, kind="a") for n, f in BINARY for a, b in BROADCASTS]
CASES += [case(f"{n}-transposed", lambda lib, x, y, f=f: f(x.T, y), (4, 3), (3, 4), kind="a") for n, f in BINARY]
CASES += [
    case("radd", lambda lib, x: 2.0 + x, (3, 4)),
    case("rsub", lambda lib, x: 1.5 - x, (3, 4)),
    case("rmul", lambda lib, x: 0.5 * x, (3, 4)),
    case("rdiv", lambda lib, x: 3.0 / x, (3, 4), kind="a"),
    case("neg", lambda lib, x: -x, (3, 4)),
    case("pow2", lambda lib, x: x ** 2, (3, 4)),
    case("pow3", lambda lib, x: x ** 3, (3, 4)),
    case("pow-1", lambda lib, x: x ** -1, (3, 4), kind="a"),
    case("pow0.5", lambda lib, x: x ** 0.5, (3, 4), kind="p"),
    case("pow-1.5", lambda lib, x: x.pow(-1.5), (3, 4), kind="p"),
    case("exp", lambda lib, x: x.exp(), (3, 4)),
    case("log", lambda lib, x: x.log(), (3, 4), kind="p"),
    case("sqrt", lambda lib, x: x.sqrt(), (3, 4), kind="p"),
    case("tanh", lambda lib, x: x.tanh(), (3, 4)),
    case("relu", lambda lib, x: x.relu(), (3, 4), kind="a"),
    case("relu-at-zero", lambda lib, x: x.relu(), (3, 4), kind="t"),  # d relu(0) = 0 on both sides
    case("abs", lambda lib, x: x.abs(), (3, 4), kind="t"),  # d |0| = 0 on both sides
    case("sigmoid", lambda lib, x: x.sigmoid(), (3, 4)),
    case("sigmoid-large", lambda lib, x: (x * 50.0).sigmoid(), (3, 4)),
    case("gelu", lambda lib, x: x.gelu(), (3, 4),
         torch_fn=lambda lib, x: lib.nn.functional.gelu(x, approximate="tanh")),
    case("gelu-transposed", lambda lib, x: (x.T * 3.0).gelu(), (4, 3),
         torch_fn=lambda lib, x: lib.nn.functional.gelu(x.T * 3.0, approximate="tanh")),
    case("exp-transposed", lambda lib, x: x.T.exp(), (4, 3)),
]

MATMULS = [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((3, 4), (2, 4, 5)),
           ((2, 3, 4), (4, 5)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,))]
CASES += [case(f"matmul-{a}@{b}", lambda lib, x, y: x @ y, a, b) for a, b in MATMULS]
CASES += [case("matmul-transposed", lambda lib, x, y: x.T @ y.transpose(-1, -2), (4, 3), (2, 4))]

for keepdim in (False, True):
    kd = "keep" if keepdim else "drop"
    for d in (None, 0, -1, (0, 2), 1):
        CASES += [
            case(f"sum-{d}-{kd}", lambda lib, x, d=d, k=keepdim: x.sum(dim=d, keepdim=k), (2, 3, 4)),
            case(f"mean-{d}-{kd}", lambda lib, x, d=d, k=keepdim: x.mean(dim=d, keepdim=k), (2, 3, 4)),
            case(f"var-{d}-c0-{kd}", lambda lib, x, d=d, k=keepdim: x.var(dim=d, keepdim=k, correction=0), (2, 3, 4)),
            case(f"var-{d}-c1-{kd}", lambda lib, x, d=d, k=keepdim: x.var(dim=d, keepdim=k, correction=1), (2, 3, 4)),
            case(f"max-{d}-{kd}", lambda lib, x, d=d, k=keepdim: x.max(dim=d, keepdim=k), (2, 3, 4), kind="d",
                 torch_fn=_torch_amax(d, keepdim)),
            case(f"max-ties-{d}-{kd}", lambda lib, x, d=d, k=keepdim: x.max(dim=d, keepdim=k), (2, 3, 4), kind="t",
                 torch_fn=_torch_amax(d, keepdim)),
        ]
CASES += [
    case("var-default", lambda lib, x: x.var(), (3, 4)),
    case("sum-transposed", lambda lib, x: x.permute(2, 0, 1).sum(1), (2, 3, 4)),
    case("var-transposed", lambda lib, x: x.T.var(0, keepdim=True), (3, 4)),
]

CASES += [
    case("reshape", lambda lib, x: x.reshape(6, 4), (2, 3, 4)),
    case("reshape-minus1", lambda lib, x: x.reshape(-1), (2, 3, 4)),
    case("reshape-transposed", lambda lib, x: x.transpose(0, 2).reshape(-1, 2), (2, 3, 4)),
    case("view", lambda lib, x: x.view(4, -1, 2), (2, 3, 4)),
    case("flatten", lambda lib, x: x.flatten(1), (2, 3, 4)),
    case("transpose", lambda lib, x: x.transpose(-1, -3), (2, 3, 4)),
    case("T", lambda lib, x: x.T, (3, 4)),
    case("permute", lambda lib, x: x.permute(2, 0, 1), (2, 3, 4)),
    case("permute-negative", lambda lib, x: x.permute((-1, 0, 1)), (2, 3, 4)),
    case("expand", lambda lib, x: x.expand(2, 3, 4), (3, 1)),
    case("expand-minus1", lambda lib, x: x.expand(2, -1, 4), (3, 1)),
    case("unsqueeze", lambda lib, x: x.unsqueeze(1), (3, 4)),
    case("unsqueeze-negative", lambda lib, x: x.unsqueeze(-1), (3, 4)),
    case("squeeze", lambda lib, x: x.squeeze(), (3, 1, 4)),
    case("squeeze-dim", lambda lib, x: x.squeeze(-2), (3, 1, 4)),
    case("squeeze-non1", lambda lib, x: x.squeeze(0), (3, 1, 4)),
    case("repeat_interleave", lambda lib, x: x.repeat_interleave(2, dim=1), (2, 3)),
    case("repeat_interleave-negative", lambda lib, x: x.repeat_interleave(3, dim=-2), (2, 3, 2)),
]

CASES += [
    case("index-int", lambda lib, x: x[1], (3, 4)),
    case("index-negative", lambda lib, x: x[-1], (3, 4)),
    case("index-slice", lambda lib, x: x[1:3], (3, 4)),
    case("index-step", lambda lib, x: x[::2, 1::2], (3, 4)),
    case("index-reversed", lambda lib, x: x[:, ::-1], (3, 4), torch_fn=lambda lib, x: x.flip(1)),
    case("index-none", lambda lib, x: x[None, :, None], (3, 4)),
    case("index-ellipsis", lambda lib, x: x[..., 0], (2, 3, 4)),
    case("index-int-ellipsis-none", lambda lib, x: x[1, ..., None], (2, 3, 4)),
    case("index-scalar", lambda lib, x: x[0, 1], (3, 4)),
    case("index-embedding", lambda lib, w: w[lib.tensor(IDX)], (5, 3)),
    case("index-list-repeated", lambda lib, x: x[:, [1, 1, 0]], (3, 4)),
    case("index-pairs-repeated", lambda lib, x: x[[0, 2, 0], [1, 3, 1]], (3, 4)),
    case("index-bool", lambda lib, x: x[lib.tensor(MASK)], (3, 4)),
    case("index-bool-rows", lambda lib, x: x[lib.tensor(ROW_MASK)], (3, 4)),
    case("index-bool-columns", lambda lib, x: x[:, lib.tensor(COL_MASK)], (3, 4)),
    case("index-transposed", lambda lib, x: x.T[1:, [0, 0]], (3, 4)),
]

CASES += [
    case("cat", lambda lib, a, b: lib.cat([a, b], dim=0), (2, 3), (4, 3)),
    case("cat-three-negative", lambda lib, a, b, c: lib.cat([a, b, c], dim=-1), (2, 3), (2, 1), (2, 2)),
    case("stack", lambda lib, a, b, c: lib.stack([a, b, c]), (2, 3), (2, 3), (2, 3)),
    case("stack-negative", lambda lib, a, b: lib.stack([a, b], dim=-1), (2, 3), (2, 3)),
    case("split", lambda lib, x: lib.cat([p * (i + 1.0) for i, p in enumerate(x.split(2))]), (5, 3)),
    case("split-sizes", lambda lib, x: lib.cat([p * (i + 1.0) for i, p in enumerate(x.split([1, 3, 1]))]), (5, 3)),
    case("split-dim", lambda lib, x: x.split(2, dim=-1)[2], (3, 5)),
    case("chunk", lambda lib, x: lib.cat([p * (i + 1.0) for i, p in enumerate(x.chunk(2, dim=1))], 1), (3, 5)),
    case("where", lambda lib, x, y: lib.where(lib.tensor(COND), x, y), (3, 4), (3, 4)),
    case("where-broadcast", lambda lib, x, y: lib.where(lib.tensor(COND[:, :1]), x, y), (1, 4), (4,)),
    case("where-scalar", lambda lib, x: lib.where(lib.tensor(COND), x, 0.5), (3, 4)),
    case("masked_fill", lambda lib, x: x.masked_fill(lib.tensor(MASK), 2.0), (3, 4)),
    case("masked_fill-broadcast", lambda lib, x: x.masked_fill(lib.tensor(COL_MASK), -1.0), (3, 4)),
    case("masked_fill-transposed", lambda lib, x: x.T.masked_fill(lib.tensor(MASK), 0.0), (4, 3)),
]

for d in (-1, 0, 1):
    CASES += [case(f"softmax-{d}", lambda lib, x, d=d: x.softmax(d), (2, 3, 4)),
              case(f"log_softmax-{d}", lambda lib, x, d=d: x.log_softmax(d), (2, 3, 4))]
CASES += [
    case("softmax-transposed", lambda lib, x: x.T.softmax(-1), (3, 4)),
    case("softmax-masked", lambda lib, x: x.masked_fill(lib.tensor(MASK), float("-inf")).softmax(-1), (3, 4)),
    case("softmax-huge", lambda lib, x: (x + 1e4).softmax(-1), (3, 4)),
    case("softmax-huge-saturated", lambda lib, x: lib.cat([(x * 1e4).softmax(-1), x], 0), (3, 4)),
    case("log_softmax-huge", lambda lib, x: (x * 1e4).log_softmax(-1), (3, 4)),
    case("double", lambda lib, x: x.double() * 2.0, (3, 4)),
    case("float", lambda lib, x: x.float() * 2.0, (3, 4)),
]


def _ce_ours(ignore_index, reduction, scale=1.0, target=TARGET):
    return lambda lib, z: ops.CrossEntropy.apply(z * scale, target=target, ignore_index=ignore_index,
                                                 reduction=reduction)


def _ce_torch(ignore_index, reduction, scale=1.0, target=TARGET):
    return lambda lib, z: lib.nn.functional.cross_entropy(z * scale, lib.tensor(target), ignore_index=ignore_index,
                                                          reduction=reduction)


for r in ("mean", "sum", "none"):
    CASES += [
        case(f"cross_entropy-{r}", _ce_ours(-100, r), (4, 5), torch_fn=_ce_torch(-100, r)),
        case(f"cross_entropy-{r}-ignore", _ce_ours(4, r), (4, 5), torch_fn=_ce_torch(4, r)),
        case(f"cross_entropy-{r}-ignore-repeated", _ce_ours(0, r, target=np.array([2, 2, 0, 3])), (4, 5),
             torch_fn=_ce_torch(0, r, target=np.array([2, 2, 0, 3]))),
        case(f"cross_entropy-{r}-huge", _ce_ours(-100, r, scale=1e4), (4, 5), torch_fn=_ce_torch(-100, r, scale=1e4)),
    ]
for nd, shape in ((1, (3, 4)), (2, (2, 3, 4))):
    CASES += [case(f"layer_norm-ndims{nd}", lambda lib, x, nd=nd: ops.LayerNorm.apply(x, ndims=nd, eps=1e-5), shape,
                   torch_fn=lambda lib, x, nd=nd: lib.nn.functional.layer_norm(x, x.shape[-nd:], eps=1e-5))]
CASES += [case("layer_norm-transposed", lambda lib, x: ops.LayerNorm.apply(x.T, ndims=1, eps=1e-5), (4, 3),
               torch_fn=lambda lib, x: lib.nn.functional.layer_norm(x.T, (4,), eps=1e-5))]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("fn, torch_fn, shapes, kind", CASES)
def test_parity(fn, torch_fn, shapes, kind, dtype, rng, sample, torch, check_graph_dtype):
    arrays = [sample(s, kind).astype(dtype) for s in shapes]
    ours = [Tensor(a, requires_grad=True, dtype=dtype) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, out_t = fn(tg, *ours), torch_fn(torch, *theirs)

    expected = out_t.detach().numpy()
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_allclose(out.data, expected, **TOL[dtype])
    check_graph_dtype(out, dtype if out.dtype == dtype else None)  # no node drifts to another dtype

    g = rng.standard_normal(expected.shape).astype(expected.dtype)  # one random upstream gradient for both
    out.backward(gradient=g)
    out_t.backward(gradient=torch.from_numpy(g))
    for x, xt in zip(ours, theirs):
        if xt.grad is None:
            assert x.grad is None or not np.any(x.grad)
            continue
        assert x.grad.dtype == dtype and x.grad.shape == x.shape
        np.testing.assert_allclose(x.grad, xt.grad.numpy(), **TOL[dtype])
    assert any(xt.grad is not None and xt.grad.abs().sum() > 0 for xt in theirs), "a case with no gradient at all"


# ---------------------------------------------------------------------------------------
# Dropout: the random mask cannot match torch's, so compare the convention instead
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_matches_torch_convention(p, dtype, torch):
    """Inverted dropout on both sides: kept values scaled by 1/(1-p), about (1-p) of them kept."""
    x = np.ones((200, 500), dtype)
    tg.manual_seed(0)
    t = Tensor(x, requires_grad=True, dtype=dtype)
    out = t.dropout(p)
    torch.manual_seed(0)
    out_t = torch.nn.functional.dropout(torch.from_numpy(x), p=p, training=True).numpy()
    assert out.dtype == dtype
    for values in (out.data, out_t):
        np.testing.assert_allclose(np.unique(values), [0.0, 1 / (1 - p)], rtol=1e-6)
        assert abs((values != 0).mean() - (1 - p)) < 0.01
    g = np.arange(x.size, dtype=dtype).reshape(x.shape)
    out.backward(gradient=g)
    assert t.grad.dtype == dtype
    np.testing.assert_array_equal(t.grad, g * out.data)  # the same mask scales the gradient


def test_dropout_edge_probabilities_match_torch(torch):
    x = np.arange(1.0, 13.0).reshape(3, 4)
    for p in (0.0, 1.0):
        ours = Tensor(x).dropout(p).data
        theirs = torch.nn.functional.dropout(torch.from_numpy(x), p=p, training=True).numpy()
        np.testing.assert_array_equal(ours, theirs)
    t = Tensor(x)
    assert t.dropout(0.5, training=False) is t


def test_dropout_mask_follows_manual_seed():
    x = Tensor(np.ones((4, 5)))
    tg.manual_seed(3)
    a = x.dropout(0.5).data
    tg.manual_seed(3)
    b = x.dropout(0.5).data
    c = x.dropout(0.5).data
    np.testing.assert_array_equal(a, b)
    assert np.any(b != c)
    assert np.any(a == 0) and np.any(a != 0)


# ---------------------------------------------------------------------------------------
# Documented differences from PyTorch
# ---------------------------------------------------------------------------------------

def test_fully_masked_row_zeros_where_torch_gives_nan(torch):
    x = np.zeros((2, 3))
    mask = np.array([[False, True, False], [True, True, True]])
    theirs = torch.from_numpy(x).masked_fill(torch.from_numpy(mask), float("-inf")).softmax(-1).numpy()
    ours = Tensor(x).masked_fill(mask, float("-inf")).softmax(-1).data
    assert np.all(np.isnan(theirs[1])) and np.all(ours[1] == 0)
    np.testing.assert_allclose(ours[0], theirs[0])


def test_all_ignored_cross_entropy_zero_where_torch_gives_nan(torch):
    z = np.zeros((2, 3))
    theirs = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.tensor([1, 1]), ignore_index=1)
    ours = ops.CrossEntropy.apply(Tensor(z), target=np.array([1, 1]), ignore_index=1, reduction="mean")
    assert torch.isnan(theirs) and ours.item() == 0.0
