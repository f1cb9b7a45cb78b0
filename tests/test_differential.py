"""Differential tests against PyTorch: generated shapes, dtypes and short chains of ops.

hypothesis draws a dtype, an input (0-d, empty dims, size-1 dims, sometimes a non-contiguous
array; values that are normal, or small integers with ties and zeros, sometimes with NaNs) and
a chain of 2-4 ops of the public Tensor API with their arguments (dims out of range included,
and broadcasting partners that may not broadcast). Both libraries run the chain step by step.
Where PyTorch raises, we must raise a ValueError or TypeError (IndexError for indexing); where
it computes, we must give the same shape, dtype and values; at the end the gradient of every
leaf under one random upstream gradient must agree, float64 tightly, float32 loosely.

Rounding is not a bug, so a chain ends early where it alone makes the two sides differ: where
the inputs of a kink (relu at 0, tied maxima) fall on different sides of it, and where an
op's outputs differ although our op on PyTorch's very inputs gives PyTorch's output (log of a
number rounded to 1 on one side only). Gradients that are inf or NaN on both sides agree; a
float32 gradient may be as far from PyTorch's as PyTorch's is from its own float64 one.

The budget is fixed and derandomized (a few seconds), and the sample does not depend on what
else ran (see fixed_sample). The suite must pass on any sample, though: with 13 random seeds
and budgets 6x larger (about 300,000 examples) it does.

DIFFERENCES is the one list of the ways we knowingly differ from PyTorch; the README's "Where
it differs from PyTorch" shows the same sentences (a test checks that). The chains step around
those cases, and test_documented_difference_holds checks each of them, so the list cannot rot.
"""

import collections
import functools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import tinygrad_attn as tg  # noqa: E402
from tinygrad_attn import Tensor, nn, optim  # noqa: E402
from tinygrad_attn.nn import functional as F  # noqa: E402

SETTINGS = settings(max_examples=400, derandomize=True, deadline=None, database=None)  # examples per test
CHAINS = settings(SETTINGS, max_examples=1000)  # the chains are the heart of it (~3 ms each)
FEWER = settings(SETTINGS, max_examples=150)  # the slower functional cases (~15 ms each)
TOL = {np.float32: (2e-3, 2e-4), np.float64: (1e-8, 1e-10)}  # (rtol, atol relative to the largest value)
COVERED = collections.Counter()  # op name -> chains that applied it (checked at the end)

# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------

shapes = st.lists(st.integers(0, 4), max_size=3).map(tuple)


@st.composite
def arrays(draw, shape, dtype):
    """Values of one of three kinds, sometimes as a non-contiguous array (transposed or strided)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "ties", "specials"] if dtype.kind == "f" else ["ties"]))
    if kind == "normal":
        values = rng.standard_normal(shape)
    else:
        values = rng.integers(-2, 3, shape).astype(np.float64)  # zeros and ties
        if kind == "specials":
            values[rng.random(shape) < 0.15] = np.nan  # inf comes from the ops (exp, log, 1/0); NaN must propagate
    values = values.astype(dtype)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if layout == "transposed" and len(shape) >= 2:
        values = np.ascontiguousarray(values.swapaxes(0, 1)).swapaxes(0, 1)
    elif layout == "strided" and len(shape) >= 1:
        values = np.repeat(values, 2, axis=-1)[..., ::2]
    return values


class Leaf:
    """An op argument that is a fresh input tensor: both sides make it a leaf and compare its gradient."""

    def __init__(self, array):
        self.array = array


def make_leaf(array, lib, leaves):
    """The array as an input of `lib` (requiring a gradient if floating), recorded in `leaves`."""
    floating = array.dtype.kind == "f"
    if lib is tg:  # from_numpy keeps the layout (a strided array stays strided); Tensor() copies
        t = tg.from_numpy(array) if not array.flags.c_contiguous else Tensor(array, dtype=array.dtype)
        t.requires_grad_(floating)
    else:
        t = torch.tensor(array, requires_grad=floating)
    leaves.append(t)
    return t


def lift(args, lib, leaves):
    return [make_leaf(a.array, lib, leaves) if isinstance(a, Leaf) else a for a in args]


# ---------------------------------------------------------------------------------------
# The ops: name, how to draw arguments for an input, our call, torch's call (if spelled
# differently); `skip`: the inputs for which a documented difference applies; `kink`: what
# decides which branch of a kinked function applies (relu's x > 0), which rounding may flip.
# ---------------------------------------------------------------------------------------

Op = collections.namedtuple("Op", "name args ours theirs skip kink", defaults=(None, None, None))


def no_args(draw, x):
    return ()


def a_dim(draw, x, extra=1):
    """A dim, now and then one out of range (PyTorch and we must both refuse it)."""
    n = max(x.ndim, 1)
    return draw(st.integers(-n - extra, n - 1 + extra))


def reduce_args(draw, x):
    """dim: None (all), () (all, as PyTorch reads it), one dim or two; and keepdim."""
    how = draw(st.sampled_from(["all", "empty tuple", "one", "two"]))
    dim = {"all": None, "empty tuple": ()}.get(how)
    if how == "one" or (how == "two" and x.ndim < 2):
        dim = a_dim(draw, x)
    elif how == "two":
        dim = tuple(draw(st.permutations(range(x.ndim)))[:2])
    return dim, draw(st.booleans())


def var_args(draw, x):
    return reduce_args(draw, x) + (draw(st.sampled_from([0, 1])),)


def reduced_sizes(x, dim):
    """The number of elements each output of a reduction over dim gathers."""
    dims = range(x.ndim) if dim is None or dim == () else [d % max(x.ndim, 1) for d in np.atleast_1d(dim)]
    return int(np.prod([x.shape[d] for d in dims if d < x.ndim]))


def all_neg_inf_rows(x, dim):
    """True if some row along dim is entirely -inf (softmax gives zeros there, PyTorch NaN)."""
    a = x.numpy()
    if a.ndim == 0:
        return bool(a == -np.inf)
    return a.size > 0 and a.shape[dim % a.ndim] > 0 and bool(np.all(a == -np.inf, axis=dim % a.ndim).any())


def all_zero_slices(x, dim):
    a = np.asarray(x.numpy())
    axes = None if dim is None or dim == () or a.ndim == 0 else tuple(d % a.ndim for d in np.atleast_1d(dim))
    return a.size > 0 and bool(np.all(a == 0, axis=axes).any())


def enlarges(mask_shape, shape):
    """True if a mask of mask_shape broadcasts with shape to something larger than shape."""
    try:
        return np.broadcast_shapes(mask_shape, shape) != shape
    except ValueError:
        return False  # does not broadcast at all: both must refuse


def ties(a, dim):
    """Where the largest values along dim are (they share max's gradient)."""
    axes = None if dim is None or dim == () or a.ndim == 0 else tuple(d % a.ndim for d in np.atleast_1d(dim))
    try:
        return a == a.max(axis=axes, keepdims=True)
    except ValueError:  # an empty or out-of-range dim: both libraries refuse it anyway
        return None


def torch_dim(x, dim):
    """Our dim=None means every dim; some torch ops spell that as a tuple."""
    return tuple(range(x.ndim)) if dim is None else dim


def a_shape_like(draw, x):
    """A partner for a binary op: broadcasting in one of the usual ways, or (rarely) not at all."""
    s = x.shape
    how = draw(st.sampled_from(["same", "suffix", "ones", "scalar", "prepend", "any"]))
    if how == "suffix":
        return s[draw(st.integers(0, len(s))):]
    if how == "ones":
        return tuple(1 if draw(st.booleans()) else n for n in s)
    if how == "scalar":
        return ()
    if how == "prepend":
        return (draw(st.integers(1, 3)),) + s
    if how == "any":
        return draw(shapes)
    return s


def partner(draw, x):
    return Leaf(draw(arrays(a_shape_like(draw, x), x.dtype)))


def number(draw, x):
    return draw(st.sampled_from([0.5, -1.5, 2.0, 0.0, 3, -2, True]))


def bool_mask(draw, x):
    shape = a_shape_like(draw, x)
    return np.random.default_rng(draw(st.integers(0, 2**16))).random(shape) < 0.5


def reshape_args(draw, x):
    n = x.numel()
    return draw(st.sampled_from([(-1,), (n,), (1, -1), (-1, 1), (n, 1, 1), x.shape[::-1], (2, -1)]))


def flatten_args(draw, x):
    return a_dim(draw, x, extra=0), a_dim(draw, x, extra=0)


def permutation(draw, x):
    return tuple(draw(st.permutations(range(x.ndim))))


def expand_args(draw, x):
    shape = tuple(3 if n == 1 and draw(st.booleans()) else n for n in x.shape)
    return (draw(st.integers(1, 2)),) + shape if draw(st.booleans()) else shape


def an_index(draw, x):
    n = x.shape[0] if x.ndim else 0
    return draw(st.sampled_from([0, -1, n, slice(1, None), slice(None, None, 2), None, Ellipsis,
                                 (Ellipsis, 0), (slice(None), None)]))


def matmul_partner(draw, x):
    k = x.shape[-1] if x.ndim else 2
    shape = draw(st.sampled_from([(k,), (k, 3), (k, 0), (2, k, 2), (k + 1, 2)]))  # the last one does not fit
    return (Leaf(draw(arrays(shape, x.dtype))),)


def split_args(draw, x):
    return draw(st.integers(1, 3)), a_dim(draw, x, extra=0)


def joined(pieces, dim):
    """Pieces of split/chunk glued back, each scaled differently so that the gradient tells them apart."""
    lib = tg if isinstance(pieces[0], Tensor) else torch
    floating = pieces[0].dtype.is_floating_point if lib is torch else pieces[0].dtype.kind == "f"
    return lib.cat([p * (i + 1.0) if floating else p for i, p in enumerate(pieces)], dim=dim)


def layer_norm_args(draw, x):
    return (tuple(x.shape[draw(st.integers(0, x.ndim)):]) or x.shape[-1:],)


OPS = [
    Op("neg", no_args, lambda x: -x),
    Op("exp", no_args, lambda x: x.exp()),
    Op("log", no_args, lambda x: x.log()),
    Op("sqrt", no_args, lambda x: x.sqrt()),
    Op("tanh", no_args, lambda x: x.tanh()),
    Op("sigmoid", no_args, lambda x: x.sigmoid()),
    Op("relu", no_args, lambda x: x.relu(), kink=lambda a: a > 0),
    Op("abs", no_args, lambda x: x.abs(), kink=np.sign,
       skip=lambda x: np.isnan(x.numpy()).any()),  # DIFFERENCES["abs-at-nan"]
    Op("gelu", no_args, lambda x: x.gelu(), lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    Op("pow", lambda d, x: (d(st.sampled_from([0, 1, 2, 3, 0.5, -1, -1.5])),), lambda x, p: x ** p,
       skip=lambda x, p: p < 1 and (x.numpy() == 0).any()),  # DIFFERENCES["pow-at-zero"]
    Op("add-number", lambda d, x: (number(d, x),), lambda x, c: x + c),
    Op("rsub-number", lambda d, x: (number(d, x),), lambda x, c: c - x,
       skip=lambda x, c: c is True),  # DIFFERENCES["bool-subtraction"]
    Op("mul-number", lambda d, x: (number(d, x),), lambda x, c: x * c),
    Op("div-number", lambda d, x: (number(d, x),), lambda x, c: x / c),
    Op("rdiv-number", lambda d, x: (number(d, x),), lambda x, c: c / x),
    Op("add", lambda d, x: (partner(d, x),), lambda x, y: x + y),
    Op("sub", lambda d, x: (partner(d, x),), lambda x, y: y - x),
    Op("mul", lambda d, x: (partner(d, x),), lambda x, y: x * y),
    Op("div", lambda d, x: (partner(d, x),), lambda x, y: x / y),
    Op("matmul", matmul_partner, lambda x, y: x @ y),
    Op("where", lambda d, x: (bool_mask(d, x), partner(d, x)),
       lambda x, c, y: tg.where(c, x, y), lambda x, c, y: torch.where(torch.tensor(c), x, y)),
    Op("masked_fill", lambda d, x: (bool_mask(d, x), number(d, x)),
       lambda x, m, v: x.masked_fill(m, v), lambda x, m, v: x.masked_fill(torch.tensor(m), v),
       skip=lambda x, m, v: enlarges(m.shape, x.shape)),  # DIFFERENCES["masked-fill-broadcast"]
    Op("sum", reduce_args, lambda x, d, k: x.sum(dim=d, keepdim=k)),
    Op("mean", reduce_args, lambda x, d, k: x.mean(dim=d, keepdim=k)),
    Op("var", var_args, lambda x, d, k, c: x.var(dim=d, keepdim=k, correction=c),
       skip=lambda x, d, k, c: reduced_sizes(x, d) <= c or d == ()),  # DIFFERENCES["var-no-dof"], ["var-empty-dims"]
    Op("max", reduce_args, lambda x, d, k: x.max(dim=d, keepdim=k),
       lambda x, d, k: torch.amax(x, dim=torch_dim(x, d), keepdim=k), kink=lambda a, d, k: ties(a, d)),
    Op("norm", reduce_args, lambda x, d, k: x.norm(dim=d, keepdim=k),
       lambda x, d, k: torch.linalg.vector_norm(x, dim=d, keepdim=k),
       skip=lambda x, d, k: all_zero_slices(x, d)),  # DIFFERENCES["norm-at-zero"]
    Op("softmax", lambda d, x: (a_dim(d, x),), lambda x, d: x.softmax(d),
       skip=lambda x, d: all_neg_inf_rows(x, d)),  # DIFFERENCES["masked-softmax"]
    Op("log_softmax", lambda d, x: (a_dim(d, x),), lambda x, d: x.log_softmax(d),
       skip=lambda x, d: all_neg_inf_rows(x, d)),
    Op("layer_norm", layer_norm_args, lambda x, s: F.layer_norm(x, s),
       lambda x, s: torch.nn.functional.layer_norm(x, s)),
    Op("reshape", lambda d, x: (reshape_args(d, x),), lambda x, s: x.reshape(s)),
    Op("flatten", flatten_args, lambda x, s, e: x.flatten(s, e)),
    Op("transpose", lambda d, x: (a_dim(d, x), a_dim(d, x)), lambda x, a, b: x.transpose(a, b)),
    Op("permute", lambda d, x: (permutation(d, x),), lambda x, p: x.permute(p)),
    Op("unsqueeze", lambda d, x: (d(st.integers(-x.ndim - 2, x.ndim + 1)),), lambda x, d: x.unsqueeze(d)),
    Op("squeeze", lambda d, x: (d(st.one_of(st.none(), st.integers(-x.ndim - 1, x.ndim))),),
       lambda x, d: x.squeeze() if d is None else x.squeeze(d)),
    Op("expand", lambda d, x: (expand_args(d, x),), lambda x, s: x.expand(s)),
    Op("index", lambda d, x: (an_index(d, x),), lambda x, i: x[i]),
    Op("split", split_args, lambda x, n, d: joined(x.split(n, d), d)),
    Op("chunk", split_args, lambda x, n, d: joined(x.chunk(n, d), d)),
    Op("repeat_interleave", lambda d, x: (d(st.integers(1, 3)), a_dim(d, x, extra=0)),
       lambda x, r, d: x.repeat_interleave(r, dim=d)),
    Op("cat", lambda d, x: (partner(d, x), a_dim(d, x)), lambda x, y, d: tg.cat([x, y], d),
       lambda x, y, d: torch.cat([x, y], d),
       skip=lambda x, y, d: (0,) in (x.shape, y.array.shape)),  # DIFFERENCES["cat-legacy-empty"]
    Op("stack", lambda d, x: (Leaf(d(arrays(x.shape, x.dtype))), d(st.integers(-x.ndim - 2, x.ndim + 1))),
       lambda x, y, d: tg.stack([x, y], d), lambda x, y, d: torch.stack([x, y], d)),
]
ALLOWED_ERRORS = {"index": (IndexError, ValueError, TypeError)}


# ---------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------

def assert_same(ours, theirs, what):
    """Same shape, dtype and values (NaN where PyTorch has NaN, inf where it has inf)."""
    got, expected = np.asarray(ours), theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, PyTorch {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, PyTorch {expected.dtype}"
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, expected, err_msg=what)
        return
    finite = np.abs(expected[np.isfinite(expected)])
    rtol, atol = TOL[got.dtype.type]
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * max(1.0, finite.max(initial=0.0)), err_msg=what)


def call(fn, *args):
    """(result, None) or (None, the exception)."""
    try:
        return fn(*args), None
    except Exception as e:  # noqa: BLE001 (which exception it is, is the point)
        return None, e


def on_their_inputs(op, theirs, their_args):
    """Our op applied to PyTorch's very inputs: tells a real difference from float rounding that an
    ill-conditioned step amplified (log(log(e)) is 1.2e-7 on one side, 0 on the other)."""
    def back(v):
        return tg.from_numpy(v.detach().numpy().copy()) if isinstance(v, torch.Tensor) else v
    return op.ours(back(theirs), *map(back, their_args))


def run_chain(data, dtype, length):
    """Draw an input and a chain of `length` ops, run it in both libraries, compare every step and the gradients."""
    x0 = data.draw(arrays(data.draw(shapes, label="shape"), np.dtype(dtype)), label="input")
    ours_leaves, their_leaves = [], []
    ours, theirs = make_leaf(x0, tg, ours_leaves), make_leaf(x0, torch, their_leaves)
    steps, trace = [], []
    for _ in range(length):
        op = OPS[data.draw(st.integers(0, len(OPS) - 1), label="op")]  # an index: ops hash by id
        args = op.args(data.draw, ours)
        if op.skip and op.skip(ours, *args):
            break  # a documented difference: step around it
        if op.kink and not np.array_equal(op.kink(ours.numpy(), *args), op.kink(theirs.detach().numpy(), *args)):
            break  # rounding put the two inputs on different sides of a kink: both are right
        trace.append((op, args))
        steps.append(f"{op.name}{tuple(a.array.shape if isinstance(a, Leaf) else a for a in args)}")
        what = " -> ".join(steps)
        COVERED[op.name] += 1
        their_args = lift(args, torch, their_leaves)
        mine, err = call(op.ours, ours, *lift(args, tg, ours_leaves))
        theirs_next, their_err = call(op.theirs or op.ours, theirs, *their_args)
        if their_err is not None:
            assert err is not None, f"{what}: PyTorch raises {their_err!r}, we compute"
            assert isinstance(err, ALLOWED_ERRORS.get(op.name, (ValueError, TypeError))), \
                f"{what}: PyTorch raises {their_err!r}, we raise an unclear {err!r}"
            return
        if isinstance(err, TypeError) and ours.dtype.kind != "f" and ours.numel() == 0:
            return  # DIFFERENCES["empty-integer"]
        assert err is None, f"{what}: we raise {err!r} where PyTorch computes"
        try:
            assert_same(mine, theirs_next, what)
        except AssertionError:
            assert_same(on_their_inputs(op, theirs, their_args), theirs_next, what)  # a real difference fails here
            return  # rounding amplified upstream: the chain ends, no bug in this op
        assert mine.requires_grad == theirs_next.requires_grad, f"{what}: requires_grad differs"
        ours, theirs = mine, theirs_next
    if not theirs.requires_grad:
        return
    upstream = np.random.default_rng(0).standard_normal(theirs.shape).astype(theirs.detach().numpy().dtype)
    ours.backward(upstream)
    theirs.backward(torch.from_numpy(upstream))
    float64 = functools.cache(lambda: float64_gradients(x0, trace, upstream))  # only if a float32 check needs it
    for i, (a, b) in enumerate(zip(ours_leaves, their_leaves)):
        if b.requires_grad:
            got = np.zeros(a.shape, a.dtype) if a.grad is None else a.grad.numpy()
            expected = np.zeros(b.shape, got.dtype) if b.grad is None else b.grad.numpy()
            assert_same_gradient(got, expected, f"{steps}: gradient of input {i}",
                                 (lambda i=i: float64()[i]) if dtype == np.float32 else None)


def assert_same_gradient(got, expected, what, reference):
    """As assert_same, but where both are inf or NaN they agree (which one, and an inf's sign, depends
    on how a formula orders inf - inf). In float32 a difference is forgiven where PyTorch's own float32
    gradient is as far from its float64 one, reference(): rounding amplified by an ill-conditioned chain."""
    both = ~np.isfinite(got) & ~np.isfinite(expected)
    got, expected = np.where(both, 0, got), np.where(both, 0, expected)
    try:
        assert_same(got, expected, what)
    except AssertionError:
        if reference is None:
            raise
        ref = reference()
        assert np.all(np.abs(got - expected) <= 4 * np.abs(expected - ref) + 1e-6 * np.abs(ref)), \
            f"{what}: our float32 gradient is further from float64's than PyTorch's float32 one"


def float64_gradients(x0, trace, upstream):
    """PyTorch's gradients of the same chain in float64: how far float32 rounding alone moves them."""
    leaves = []
    t = make_leaf(x0.astype(np.float64), torch, leaves)
    for op, args in trace:
        t = (op.theirs or op.ours)(t, *lift([Leaf(a.array.astype(np.float64)) if isinstance(a, Leaf) else a
                                            for a in args], torch, leaves))
    t.backward(torch.from_numpy(upstream.astype(np.float64)))
    return [np.zeros(x.shape) if x.grad is None else x.grad.numpy() for x in leaves]


@pytest.fixture(autouse=True)
def fixed_sample(monkeypatch):
    """hypothesis also draws constants it finds in the source of every local module imported so far,
    so its sample would shift with any edit to the repo and with the tests that ran before: not here."""
    from hypothesis.internal.conjecture import providers
    monkeypatch.setattr(providers, "_get_local_constants", providers.Constants, raising=False)


@pytest.fixture(autouse=True)
def quiet():
    """NaN, inf and 0/0 are the point here: neither numpy's nor PyTorch's warnings about them are news."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64], ids=["f64", "f32", "i64"])
@CHAINS
@given(data=st.data(), length=st.integers(2, 4))
def test_op_chains_match_pytorch(dtype, data, length):
    run_chain(data, dtype, length)


# ---------------------------------------------------------------------------------------
# dtype promotion: numbers, 0-d and dimensioned tensors of every category
# ---------------------------------------------------------------------------------------

DTYPES = [np.bool_, np.int64, np.float32, np.float64]


@st.composite
def operands(draw):
    """A Python number, or a Tensor of some dtype, 0-d or not."""
    if draw(st.booleans()):
        return draw(st.sampled_from([True, 2, -3, 0.5, 2.0]))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(st.sampled_from([(), (3,), (2, 3)]))
    values = np.random.default_rng(draw(st.integers(0, 99))).integers(-2, 3, shape)
    return np.asarray(values != 0 if dtype == np.bool_ else values, dtype)


BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b, "lt": lambda a, b: a < b}


@SETTINGS
@given(a=operands(), b=operands(), op=st.sampled_from(sorted(BINARY)), where=st.booleans())
def test_dtype_promotion_matches_pytorch(a, b, op, where):
    if not any(isinstance(v, np.ndarray) for v in (a, b)):
        b = np.asarray(b, np.float32)  # at least one tensor
    ours = [Tensor(v, dtype=v.dtype) if isinstance(v, np.ndarray) else v for v in (a, b)]
    theirs = [torch.tensor(v) if isinstance(v, np.ndarray) else v for v in (a, b)]
    cond = np.array([True, False, True])

    def run(lib, x, y):  # where(cond, x, y) promotes x and y as a binary op does
        return lib.where(cond if lib is tg else torch.tensor(cond), x, y) if where else BINARY[op](x, y)

    what = f"{'where' if where else op}({a!r}, {b!r})"
    if op == "sub" and not where and any(np.asarray(v).dtype == np.bool_ for v in (a, b)):
        return  # DIFFERENCES["bool-subtraction"]
    try:
        expected = run(torch, *theirs)
    except Exception:  # noqa: BLE001 (bool - bool, ...)
        with pytest.raises((TypeError, ValueError)):
            run(tg, *ours)
        return
    assert_same(run(tg, *ours), expected, what)


@SETTINGS
@given(dtypes=st.lists(st.sampled_from(DTYPES), min_size=2, max_size=3))
def test_cat_promotes_as_pytorch(dtypes):
    arrays_ = [np.ones(2, d) for d in dtypes]
    assert_same(tg.cat([Tensor(a, dtype=a.dtype) for a in arrays_]), torch.cat([torch.tensor(a) for a in arrays_]),
                f"cat of {dtypes}")


# ---------------------------------------------------------------------------------------
# The functional layer: cross-entropy and attention over generated shapes
# ---------------------------------------------------------------------------------------

@FEWER
@given(n=st.integers(1, 4), c=st.integers(1, 4), extra=st.sampled_from([(), (2,), (0,)]),
       reduction=st.sampled_from(["mean", "sum", "none"]), ignore=st.booleans(), seed=st.integers(0, 999),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_cross_entropy_matches_pytorch(n, c, extra, reduction, ignore, seed, dtype):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c) + extra).astype(dtype)
    target = rng.integers(0, c, (n,) + extra)
    if ignore:
        target[0] = -100  # one ignored row; all of them ignored is a documented difference
    if reduction == "mean" and (target != -100).sum() == 0:
        return  # DIFFERENCES["no-counted-target"]
    x, xt = Tensor(logits, requires_grad=True, dtype=dtype), torch.tensor(logits, requires_grad=True)
    out = F.cross_entropy(x, Tensor(target), reduction=reduction)
    out_t = torch.nn.functional.cross_entropy(xt, torch.tensor(target), reduction=reduction)
    assert_same(out, out_t, "cross_entropy")
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(g)
    out_t.backward(torch.from_numpy(g))
    assert_same(x.grad, xt.grad, "cross_entropy gradient")


@FEWER
@given(b=st.integers(1, 2), h=st.sampled_from([1, 2]), lq=st.integers(0, 3), lk=st.integers(0, 3),
       e=st.integers(1, 3), mask=st.sampled_from(["none", "causal", "bool", "float"]), seed=st.integers(0, 999))
def test_scaled_dot_product_attention_matches_pytorch(b, h, lq, lk, e, mask, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s) for s in [(b, h, lq, e), (b, h, lk, e), (b, h, lk, e)])
    attn_mask = {"none": None, "causal": None, "bool": rng.random((lq, lk)) < 0.7,
                 "float": rng.standard_normal((lq, lk))}[mask]
    ours = [Tensor(a, requires_grad=True, dtype=np.float64) for a in (q, k, v)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    kw = dict(is_causal=mask == "causal")
    out = F.scaled_dot_product_attention(*ours, attn_mask=attn_mask, **kw)
    out_t = torch.nn.functional.scaled_dot_product_attention(
        *theirs, attn_mask=None if attn_mask is None else torch.tensor(attn_mask), **kw)
    assert_same(out, out_t, f"sdpa {mask}")
    g = rng.standard_normal(out.shape)
    out.backward(g)
    out_t.backward(torch.from_numpy(g))
    for i, (a, t) in enumerate(zip(ours, theirs)):
        assert_same(a.grad if a.grad is not None else Tensor(np.zeros(a.shape), dtype=np.float64),
                    t.grad if t.grad is not None else torch.zeros_like(t), f"sdpa {mask}: gradient of input {i}")


def test_every_op_was_exercised():
    """The chains reach every op of the table (they ran earlier in this module)."""
    if not COVERED:
        pytest.skip("the chain tests did not run in this session")
    assert set(COVERED) == {op.name for op in OPS}, f"never drawn: {sorted({op.name for op in OPS} - set(COVERED))}"


# ---------------------------------------------------------------------------------------
# Documented differences from PyTorch: the one list, each checked to still hold
# ---------------------------------------------------------------------------------------

def _float_arrays():
    assert Tensor(np.ones(2)).dtype == tg.float32 and torch.tensor(np.ones(2)).dtype == torch.float64
    assert (Tensor([1.0, 2.0]) + np.ones(2)).dtype == tg.float32
    assert (torch.tensor([1.0, 2.0]) + torch.from_numpy(np.ones(2))).dtype == torch.float64


def _masked_softmax():
    row = np.full((1, 3), -np.inf)
    assert np.all(Tensor(row).softmax(-1).data == 0) and torch.tensor(row).softmax(-1).isnan().all()
    assert np.all(Tensor(row).log_softmax(-1).data == -np.inf) and torch.tensor(row).log_softmax(-1).isnan().all()


def _no_counted_target():
    z, target = np.zeros((2, 3)), np.array([1, 1])
    assert F.cross_entropy(Tensor(z), Tensor(target), ignore_index=1).item() == 0.0
    assert torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(target), ignore_index=1).isnan()
    assert F.cross_entropy(Tensor(np.zeros((0, 3))), Tensor(np.zeros(0, np.int64))).item() == 0.0


def _gelu_tanh():
    x = np.linspace(-3, 3, 7)
    assert not np.allclose(nn.GELU()(Tensor(x, dtype=np.float64)).data, torch.nn.GELU()(torch.tensor(x)).numpy())
    with pytest.raises(ValueError, match="only approximate='tanh'"):
        nn.GELU(approximate="none")


def _max_is_amax():
    x = np.array([[1.0, 3.0], [2.0, 0.0]])
    np.testing.assert_array_equal(Tensor(x).max(dim=1).data, torch.amax(torch.tensor(x), dim=1).numpy())
    assert isinstance(torch.tensor(x).max(dim=1), tuple)  # PyTorch's: (values, indices)


def _var_no_dof():
    x, xt = Tensor([1.0, 2.0], requires_grad=True, dtype=np.float64), torch.tensor([1.0, 2.0], requires_grad=True)
    x.var(correction=2).backward()
    xt.var(correction=2).backward()
    assert x.var(correction=2).item() == np.inf and xt.var(correction=2).item() == np.inf
    np.testing.assert_array_equal(x.grad, [-np.inf, np.inf])
    np.testing.assert_array_equal(xt.grad.numpy(), [np.inf, np.inf])


def _norm_at_zero():
    x, xt = Tensor(np.zeros(2), requires_grad=True, dtype=np.float64), torch.zeros(2, requires_grad=True)
    x.norm().backward()
    torch.linalg.vector_norm(xt).backward()
    assert np.isnan(x.grad.numpy()).all() and (xt.grad == 0).all()


def _mixed_float_matmul():
    assert (Tensor(np.ones((2, 2))) @ Tensor(np.ones((2, 2)), dtype=np.float64)).dtype == tg.float64
    with pytest.raises(RuntimeError):
        torch.ones(2, 2) @ torch.ones(2, 2, dtype=torch.float64)


def _abs_at_nan():
    x, xt = Tensor([np.nan], requires_grad=True, dtype=np.float64), torch.tensor([np.nan], requires_grad=True)
    x.abs().sum().backward()
    xt.abs().sum().backward()
    assert np.isnan(x.grad.item()) and xt.grad.item() == 0.0


def _bool_subtraction():
    np.testing.assert_array_equal((True - Tensor([1.0, 3.0])).data, [0.0, -2.0])
    with pytest.raises(RuntimeError, match="Subtraction"):
        True - torch.tensor([1.0, 3.0])


def _masked_fill_broadcast():
    with pytest.raises(ValueError, match="does not broadcast to tensor shape"):
        Tensor(np.zeros(4)).masked_fill(np.ones((2, 4), bool), 1.0)
    assert torch.zeros(4).masked_fill(torch.ones(2, 4, dtype=torch.bool), 1.0).shape == (2, 4)


def _cat_legacy_empty():
    with pytest.raises(ValueError, match="differ outside that dim"):
        tg.cat([Tensor(np.zeros((2, 3))), Tensor(np.zeros(0))], dim=1)
    assert torch.cat([torch.zeros(2, 3), torch.zeros(0)], dim=1).shape == (2, 3)


def _var_empty_dims():
    x, xt = Tensor([0.5, -1.0], requires_grad=True, dtype=np.float64), torch.tensor([0.5, -1.0], requires_grad=True)
    x.var(dim=(), correction=0).backward()
    xt.var(dim=(), correction=0).backward()
    np.testing.assert_allclose(x.grad, [0.75, -0.75])  # 2 (x - mean) / n
    np.testing.assert_allclose(xt.grad.numpy(), [1.5, -1.5])  # n taken as 1
    assert tg.gradcheck(lambda t: t.var(dim=(), correction=0), [x])


def _empty_integer():
    with pytest.raises(TypeError, match="softmax needs a floating-point tensor"):
        Tensor(np.zeros(0, np.int64)).softmax(0)
    assert torch.zeros(0, dtype=torch.int64).softmax(0).shape == (0,)


def _pow_at_zero():
    x, xt = Tensor(-0.0, requires_grad=True, dtype=np.float64), torch.tensor(-0.0, requires_grad=True)
    (x ** 0.5).backward()
    (xt ** 0.5).backward()
    assert x.grad.item() == np.inf and xt.grad.item() == -np.inf


def _split_zero():
    with pytest.raises(ValueError, match="split size must be positive"):
        Tensor(np.zeros(0)).split(0)
    assert len(torch.zeros(0).split(0)) == 1


def _strict_hyperparameters():
    p = nn.Parameter(np.ones(2))
    for make in (lambda ps, v: optim.SGD(ps, lr=v), lambda ps, v: optim.SGD(ps, lr=0.1, momentum=v),
                 lambda ps, v: optim.Adam(ps, lr=v)):
        with pytest.raises(ValueError, match="must be a finite number"):
            make([p], float("inf"))
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=float("inf"), momentum=float("inf"))  # accepted
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        optim.clip_grad_norm_([p], float("nan"))


def _duplicate_parameter():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="parameter 1 is parameter 0 again"):
        optim.SGD([p, p], lr=0.1)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        torch.optim.SGD([pt := torch.zeros(1, requires_grad=True), pt], lr=0.1)


def _exact_integer_loads():
    class Masked(nn.Module):
        def __init__(self):
            self.register_buffer("keep", Tensor(np.ones(2, bool)))

    with pytest.raises(ValueError, match="keep: values"):
        Masked().load_state_dict({"keep": np.array([0.5, 1.0])})
    m = torch.nn.Module()
    m.register_buffer("keep", torch.ones(2, dtype=torch.bool))
    m.load_state_dict({"keep": torch.tensor([0.5, 1.0])})
    assert m.keep.all()  # 0.5 became True


def _causal_alignment():
    q, k = np.ones((1, 2, 3)), np.ones((1, 4, 3))
    ours = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(k), is_causal=True)
    theirs = torch.nn.functional.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(k),
                                                              is_causal=True)
    assert_same(ours, theirs.float(), "is_causal")  # the same top-left alignment
    assert F.causal_mask(2, 4).data.tolist() == [[True, True, True, False], [True, True, True, True]]


def _malloc():
    from tinygrad_attn import runtime
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGRAD_ATTN_MALLOC", "default")
        mp.setattr(runtime.ctypes, "CDLL", lambda *a: pytest.fail("TINYGRAD_ATTN_MALLOC=default was ignored"))
        runtime.keep_freed_memory()


def _threads():
    from tinygrad_attn import runtime
    before = runtime.get_num_threads()
    try:
        runtime.set_num_threads(2)
        assert runtime.get_num_threads() == 2 and runtime.blas_threads() in (1, None)  # None: not OpenBLAS
    finally:
        runtime.set_num_threads(before)


# key -> (the README's sentence, the check that it still holds)
DIFFERENCES = {
    "float-arrays": ("A float numpy array becomes float32 unless `dtype=` says otherwise (PyTorch keeps float64); "
                     "beside a Tensor in arithmetic it takes the Tensor's dtype, as a Python number does.",
                     _float_arrays),
    "masked-softmax": ("Softmax of a row that is entirely `-inf` (every key masked) gives zeros, not NaN "
                       "(log_softmax gives `-inf`).", _masked_softmax),
    "no-counted-target": ("A `cross_entropy` whose targets are all `ignore_index`, or which has none, gives 0, "
                          "not NaN.", _no_counted_target),
    "gelu-tanh": ("`nn.GELU` is the tanh form (GPT-2's) and the only one.", _gelu_tanh),
    "max-is-amax": ("`x.max(dim)` returns the largest values only, as `torch.amax` (PyTorch's `max(dim)` also "
                    "returns their indices); tied maxima share the gradient, as in `amax`.", _max_is_amax),
    "causal-alignment": ("`F.scaled_dot_product_attention(is_causal=True)` is aligned top-left, as PyTorch's; "
                         "for a query shorter than the keys (decoding with a cache) pass "
                         "`attn_mask=F.causal_mask(T_q, T_k)` (PyTorch's `causal_lower_right`).", _causal_alignment),
    "strict-hyperparameters": ("Optimizers refuse NaN or inf hyper-parameters (PyTorch takes `lr=inf`), and "
                               "`clip_grad_norm_` refuses a NaN `max_norm` (it takes inf, as PyTorch does, to "
                               "measure the norm without clipping).", _strict_hyperparameters),
    "duplicate-parameter": ("A parameter listed twice in an optimizer is an error (PyTorch 2.13 warns and "
                            "updates it twice).", _duplicate_parameter),
    "exact-integer-loads": ("`load_state_dict` into a bool or integer buffer refuses values that do not convert "
                            "exactly (PyTorch turns a mask value of 0.5 into True).", _exact_integer_loads),
    "mixed-float-matmul": ("float32 @ float64 computes in float64 (PyTorch refuses matmul of mixed dtypes).",
                           _mixed_float_matmul),
    "var-no-dof": ("`var` with no degrees of freedom left (n <= correction) gives inf or NaN as PyTorch, but its "
                   "gradient is inf with the sign of x - mean (PyTorch: +inf everywhere).", _var_no_dof),
    "var-empty-dims": ("`var(dim=())` reduces every dim, as in PyTorch, with the gradient of that variance "
                       "(PyTorch 2.13's gradient there is wrong: it takes n as 1; its own gradcheck fails).",
                       _var_empty_dims),
    "norm-at-zero": ("The gradient of `x.norm()` at an all-zero x is NaN (sqrt's slope at 0; PyTorch gives 0).",
                     _norm_at_zero),
    "abs-at-nan": ("The gradient of `abs` at NaN is NaN (PyTorch gives 0).", _abs_at_nan),
    "empty-integer": ("Integer tensors are refused by the ops that need floats (`mean`, `softmax`, `gelu`, ...) "
                      "even when empty (PyTorch lets an empty one through).", _empty_integer),
    "bool-subtraction": ("`True - x` computes `1 - x` (PyTorch refuses subtraction with a bool).", _bool_subtraction),
    "masked-fill-broadcast": ("`masked_fill` refuses a mask that would make the result larger than the tensor "
                              "(PyTorch broadcasts the result to the mask's shape).", _masked_fill_broadcast),
    "cat-legacy-empty": ("`cat` does not skip 1-d empty tensors of shape (0,) along other dims, as PyTorch's legacy "
                         "rule does: every shape must fit.", _cat_legacy_empty),
    "pow-at-zero": ("At x = 0 the gradient of `x ** p` for p < 1 is infinite, with the sign numpy's `pow` "
                    "gives (PyTorch gives -inf at -0.0).", _pow_at_zero),
    "split-zero": ("`split(0)` is refused even along an empty dim (PyTorch gives one empty piece there).",
                   _split_zero),
    "malloc": ("On Linux, importing the package asks glibc's malloc to keep freed blocks for reuse (see "
               "`keep_freed_memory` in runtime.py); `TINYGRAD_ATTN_MALLOC=default` turns that off.", _malloc),
    "threads": ("Importing the package sets numpy's OpenBLAS to one thread; the fused ops split large work over "
                "the package's own threads instead, as many as the usable cores (`TINYGRAD_ATTN_THREADS=n`, or "
                "`tinygrad_attn.set_num_threads(n)`, as `torch.set_num_threads`): see `set_num_threads` in "
                "runtime.py.", _threads),
}


@pytest.mark.parametrize("key", list(DIFFERENCES))
def test_documented_difference_holds(key):
    DIFFERENCES[key][1]()


def test_readme_lists_exactly_these_differences():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Where it differs from PyTorch", 1)[1].split("\n## ", 1)[0]
    bullets = [" ".join(b.split()) for b in re.findall(r"^- (.*(?:\n  .*)*)", section, re.M)]
    assert bullets == [text for text, _ in DIFFERENCES.values()]
