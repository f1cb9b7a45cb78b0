"""The fused ops of fused.py: each against finite differences in float64 (random upstream), against
PyTorch, and against the composition of basic ops it replaces (runtime.fused_ops(False)), alone and
in whole models, values and gradients; fully masked rows; the split over threads."""

import numpy as np
import pytest

from tinygrad_attn import Tensor, fused, fused_ops, gradcheck, manual_seed, no_grad, runtime
from tinygrad_attn.nn import Transformer, TransformerConfig
from tinygrad_attn.nn import functional as F
from tinygrad_attn.engine import topological_order

from attention_testing import randn, to_float64

CAUSAL = np.triu(np.ones((4, 5), bool), 2)  # 4 queries after one cached key: query i sees keys j <= i + 1
PADDED = CAUSAL | np.array([[[[True, False, False, False, False]]], [[[False] * 5]]])  # (2, 1, 4, 5)
NO_KEY = PADDED.copy()
NO_KEY[1, 0, 2] = True  # query 2 of the second sequence sees no key at all


def sdpa(blocked, dropout_p=0.0):
    """Attention as a function of (q, k, v), drawing the same dropout masks at every call."""
    def fn(q, k, v):
        manual_seed(5)
        return fused.attention(q, k, v, blocked, 0.7, dropout_p)[0]
    return fn


def ids():
    return np.array([[0, 2, 0, 5], [4, 0, 1, 0]])  # row 0 used four times


def embedding(w):
    """What nn.Embedding does with its weight: the fused op, or indexing (ops.Index)."""
    return fused.Embedding.apply(w, ids=ids()) if runtime.fused_ops_enabled() else w[ids()]


QKV = [(2, 3, 4, 3), (2, 3, 5, 3), (2, 3, 5, 2)]
CASES = {  # name: (a function of float64 inputs that runs a fused op, or its composition under fused_ops(False); shapes)
    "linear": (lambda x, w, b: F.linear(x, w, b), [(2, 3, 4), (5, 4), (5,)]),
    "linear-no-bias": (lambda x, w: F.linear(x, w), [(3, 4), (5, 4)]),
    "linear-1d": (lambda x, w, b: F.linear(x, w, b), [(4,), (5, 4), (5,)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, 6, w, b), [(2, 3, 6), (6,), (6,)]),
    "gelu": (lambda x: F.gelu(x), [(2, 3, 4)]),
    "embedding": (embedding, [(6, 3)]),
    "attention": (sdpa(None), QKV),
    "attention-causal-padded": (sdpa(PADDED), QKV),
    "attention-no-key": (sdpa(NO_KEY), QKV),
    "attention-dropout": (sdpa(PADDED, dropout_p=0.4), QKV),
    "attention-2d": (sdpa(CAUSAL), [(4, 3), (5, 3), (5, 2)]),
}


# Attention's softmax skips each row's maximum when no score can be large (fused._row_shift): the small
# scores of these cases take that path, and with _safe_score patched to -1 the one that subtracts it.
NAMES_SHIFTS = [(name, shift) for name in CASES
                for shift in (("bound", "row-max") if name.startswith("attention") else ("-",))]


def _set_paths(monkeypatch, keep, shift):
    monkeypatch.setattr(fused, "_keep", lambda *sizes: keep)  # what backward needs kept, or recomputed
    if shift == "row-max":
        monkeypatch.setattr(fused, "_safe_score", lambda *args: -1.0)


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
@pytest.mark.parametrize("name, shift", NAMES_SHIFTS)
def test_fused_op_gradients_match_finite_differences(name, shift, keep, monkeypatch):
    _set_paths(monkeypatch, keep, shift)
    fn, shapes = CASES[name]
    inputs = [randn(*shape, seed=i, requires_grad=True) for i, shape in enumerate(shapes)]
    out = fn(*inputs)
    assert type(out.grad_fn).__module__ == "tinygrad_attn.fused"  # the fused op is what is checked
    assert gradcheck(fn, inputs)
    assert all(np.abs(x.grad).max() > 0 for x in inputs)  # no case passes by comparing zeros


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
@pytest.mark.parametrize("name, shift", NAMES_SHIFTS)
def test_fused_op_equals_the_composition_it_replaces(name, shift, keep, monkeypatch):
    _set_paths(monkeypatch, keep, shift)
    fn, shapes = CASES[name]
    results = []
    for enabled in (True, False):
        inputs = [randn(*shape, seed=i, requires_grad=True) for i, shape in enumerate(shapes)]
        with fused_ops(enabled):
            out = fn(*inputs)
        assert (type(out.grad_fn).__module__ == "tinygrad_attn.fused") == enabled
        out.backward(gradient=np.random.default_rng(9).standard_normal(out.shape))
        results.append([out.numpy()] + [x.grad for x in inputs])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_the_row_maximum_is_skipped_only_where_no_score_can_overflow():
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 64, 4, 32, 16)).astype(np.float32)  # |scores| at most about 10

    def shift(q, k, scale=0.25, v=None, weight_scale=1.0):
        S = np.matmul(q * scale, np.swapaxes(k, -1, -2))
        m = fused._row_shift(S, q, k, k if v is None else v, scale, weight_scale)
        row_max = S.max(axis=-1, keepdims=True)
        assert m is None or np.array_equal(m, np.where(np.isfinite(row_max), row_max, 0))
        return m

    assert shift(q, k) is None
    assert shift(q * 10, k) is not None  # scores up to about 100 in float32: exp(100) overflows
    assert shift(q, k, scale=-2.5) is not None  # the bound takes |scale|
    assert shift(q.astype(np.float64) * 10, k.astype(np.float64)) is None  # float64 has room up to 700
    assert shift(q, k, v=k * 1e36) is not None  # (exp(S) * M) v could overflow: large values
    assert shift(q, k, weight_scale=1e36) is not None  # ... or a dropout scale 1 / (1 - p) near 1 / 0
    assert shift(q.astype(np.float16), k.astype(np.float16)) is not None  # float16 has room up to about 2
    assert shift(q[:1, :, :1], k[:1]) is not None  # one query (decoding): the maximum is the cheaper
    q[0, 0, 0, 0] = np.inf
    assert shift(q, k) is not None  # an inf norm is no bound

    q16 = np.zeros((2, 512, 4), np.float16)  # float16: scores of 5.3 are fine, a sum of 512 exp(5.3) is not
    q16[..., 0] = 2.3
    got = fused.attention(*(Tensor(x, dtype=np.float16) for x in (q16, q16, np.ones_like(q16))), None, 1.0)[0]
    np.testing.assert_array_equal(got.numpy(), 1)

    big = [Tensor(x * 300, requires_grad=True) for x in rng.standard_normal((3, 2, 3, 5, 4)).astype(np.float32)]
    results = []
    for enabled in (True, False):  # scores in the thousands: the fused op subtracts the maximum, and agrees
        with fused_ops(enabled):
            out = fused.attention(*big, np.triu(np.ones((5, 5), bool), 1), 0.5)[0]
        assert np.isfinite(out.numpy()).all()
        results.append(out.numpy())
    np.testing.assert_allclose(*results, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("threads", [1, 2])
def test_layer_norm_in_blocks_of_rows_equals_the_composition(threads, monkeypatch):
    monkeypatch.setattr(fused, "_block_rows", lambda n: 3)  # 10 rows: blocks of 3, 3, 3, 1 (per thread: 2, 3)
    monkeypatch.setattr(runtime, "MIN_COST", 1)  # split even this small input over the threads
    results = []
    with runtime.num_threads(threads):
        for enabled in (True, False):
            x, w, b = (randn(*shape, seed=i, requires_grad=True) for i, shape in enumerate([(2, 5, 6), (6,), (6,)]))
            with fused_ops(enabled):
                out = F.layer_norm(x, 6, w, b)
            out.backward(gradient=np.random.default_rng(9).standard_normal(out.shape))
            results.append([out.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()])
    for a, b_ in zip(*results):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-14)


def test_layer_norm_of_no_rows_has_zero_gradients():
    x, w, b = (randn(*shape, seed=i, requires_grad=True) for i, shape in enumerate([(0, 5, 6), (6,), (6,)]))
    F.layer_norm(x, 6, w, b).sum().backward()
    assert x.grad.shape == (0, 5, 6) and (w.grad.numpy() == 0).all() and (b.grad.numpy() == 0).all()


def test_a_query_that_sees_no_key_gets_zeros_not_nan():
    q, k, v = (randn(2, 3, 4, 3, seed=i, requires_grad=True) for i in range(3))
    every = np.ones((4, 4), bool)
    out, weights = fused.attention(q, k, v, every, 0.5)
    out.backward(gradient=np.ones(out.shape))
    assert (out.numpy() == 0).all() and (weights().numpy() == 0).all()
    assert all((t.grad.numpy() == 0).all() for t in (q, k, v))


def test_fused_ops_match_pytorch(torch):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 5, 6)), rng.standard_normal((4, 6)), rng.standard_normal(4)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ours = [Tensor(a, dtype=np.float64, requires_grad=True) for a in (x, w, b)]
    checks = [(fused.Linear.apply(*ours), torch.nn.functional.linear(tx, tw, tb), ours, (tx, tw, tb))]
    ln = [Tensor(a, dtype=np.float64, requires_grad=True) for a in (x, x[0, 0], x[1, 0])]
    tln = [torch.tensor(a.data, requires_grad=True) for a in ln]
    checks.append((fused.LayerNorm.apply(*ln, eps=1e-5), torch.nn.functional.layer_norm(tln[0], (6,), tln[1], tln[2]),
                   ln, tln))
    g, tg = Tensor(x, dtype=np.float64, requires_grad=True), torch.tensor(x, requires_grad=True)
    checks.append((fused.GELU.apply(g), torch.nn.functional.gelu(tg, approximate="tanh"), [g], [tg]))
    e, te = Tensor(w, dtype=np.float64, requires_grad=True), torch.tensor(w, requires_grad=True)
    checks.append((fused.Embedding.apply(e, ids=ids() % 4), torch.nn.functional.embedding(torch.tensor(ids() % 4), te),
                   [e], [te]))
    qkv = [rng.standard_normal(s) for s in ((2, 3, 4, 3), (2, 3, 5, 3), (2, 3, 5, 2))]
    a = [Tensor(t, dtype=np.float64, requires_grad=True) for t in qkv]
    ta = [torch.tensor(t, requires_grad=True) for t in qkv]
    checks.append((fused.attention(*a, PADDED, 0.7)[0],
                   torch.nn.functional.scaled_dot_product_attention(*ta, attn_mask=torch.tensor(~PADDED), scale=0.7),
                   a, ta))
    for out, t_out, inputs, t_inputs in checks:
        upstream = rng.standard_normal(out.shape)
        out.backward(gradient=upstream)
        t_out.backward(torch.tensor(upstream))
        np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
        for ours_in, theirs in zip(inputs, t_inputs):
            np.testing.assert_allclose(ours_in.grad, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


MODELS = {"mha": {}, "gqa": dict(num_kv_heads=2), "rope_mqa": dict(num_kv_heads=1, positions="rope"),
          "swa": dict(window=3, layer_pattern="LG"), "mla": dict(kv_latent_dim=3), "dropout": dict(dropout=0.2)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", MODELS)
def test_a_model_trains_the_same_fused_and_composed(kind, dtype):
    """Logits, loss and every gradient, with left padding; float64 to 1e-10, float32 to its rounding."""
    idx = np.random.default_rng(0).integers(0, 11, (3, 7))
    mask = np.ones((3, 7), np.int64)
    mask[0, :3] = mask[1, :1] = 0
    results = []
    for enabled in (True, False):
        manual_seed(1)
        model = Transformer(TransformerConfig(vocab_size=11, context_length=8, d_model=8, num_layers=2, num_heads=4,
                                              **MODELS[kind]))
        if dtype == np.float64:
            to_float64(model)
        manual_seed(2)  # the dropout masks
        with fused_ops(enabled):
            logits = model(Tensor(idx), attention_mask=Tensor(mask))
            loss = F.cross_entropy(logits.reshape(-1, 11), idx.reshape(-1))
        loss.backward()
        results.append([logits.numpy()] + [p.grad for p in model.parameters()])
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, **tol)


def test_a_fused_step_records_far_fewer_nodes():
    def nodes(enabled):
        manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=11, context_length=8, d_model=8, num_layers=2, num_heads=4))
        with fused_ops(enabled):
            loss = F.cross_entropy(model(Tensor(np.zeros((2, 8), np.int64))).reshape(-1, 11), np.zeros(16, np.int64))
        return [type(t.grad_fn).__name__ for t in topological_order(loss) if t.grad_fn is not None]

    fast, slow = nodes(True), nodes(False)
    assert "ScaledDotProductAttention" in fast and "MatMul" not in fast and "Softmax" not in fast
    assert len(fast) < 0.6 * len(slow)  # 48 and 87 nodes


def test_no_graph_is_recorded_under_no_grad():
    q, k, v = (randn(1, 2, 3, 4, seed=i, requires_grad=True) for i in range(3))
    w = randn(5, 4, requires_grad=True)
    with no_grad():
        out, weights = fused.attention(q, k, v, None, 0.5)
        y = fused.Linear.apply(out, w)
    assert out.grad_fn is None and y.grad_fn is None and not y.requires_grad and not weights().requires_grad


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
def test_attention_gelu_and_layer_norm_keep_large_arrays_for_backward_only_as_what_recomputes_them(keep, monkeypatch):
    """Where fused._keep says no, attention keeps q, k, v, the output and one log-sum-exp a row,
    nothing of T_q x T_k, GELU only its input, layer norm no x_hat; recomputed or kept, the weights
    are the softmax of the scores, the ones the output was made with, and the gradients the same."""
    monkeypatch.setattr(fused, "_keep", lambda *sizes: keep)
    rng = np.random.default_rng(0)
    q, k, v = (Tensor(rng.standard_normal((8, 4, 64, 16)), requires_grad=True) for _ in range(3))
    x = Tensor(rng.standard_normal((8, 64, 16)), requires_grad=True)
    blocked = np.triu(np.ones((64, 64), bool), 1)
    out, weights = fused.attention(q, k, v, blocked, 0.25)
    y = fused.GELU.apply(x)
    z = F.layer_norm(x, 16, Tensor(np.ones(16)), Tensor(np.zeros(16)))
    assert (z.grad_fn.x_hat is not None) == keep
    kept = [a for a in vars(out.grad_fn).values() if isinstance(a, np.ndarray) and a.base is None]
    assert max(a.size for a in kept) == (8 * 4 * 64 * 64 if keep else 8 * 4 * 64 * 16)  # P, or q, k, v, out
    assert (y.grad_fn.t is not None) == keep
    P = weights().numpy()
    expected = np.where(blocked, -np.inf, q.numpy() @ k.numpy().swapaxes(-1, -2) * 0.25)
    expected = np.exp(expected - expected.max(-1, keepdims=True))
    np.testing.assert_allclose(P, expected / expected.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)  # float32
    np.testing.assert_allclose(P @ v.numpy(), out.numpy(), rtol=1e-5, atol=1e-6)
    (out.sum() + (y * y).sum() + (z * y).sum()).backward()
    grads = [t.grad.numpy() for t in (q, k, v, x)]
    monkeypatch.setattr(fused, "_keep", lambda *sizes: not keep)  # the other way
    for t in (q, k, v, x):
        t.grad = None
    y, z = fused.GELU.apply(x), F.layer_norm(x, 16, Tensor(np.ones(16)), Tensor(np.zeros(16)))
    (fused.attention(q, k, v, blocked, 0.25)[0].sum() + (y * y).sum() + (z * y).sum()).backward()
    for got, want in zip([t.grad.numpy() for t in (q, k, v, x)], grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_splitting_over_threads_changes_nothing_but_rounding(threads):
    """Large enough inputs that parallel_for splits them; the same results at any number of threads."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((64, 32, 64)).astype(np.float32), requires_grad=True)
    w, b = (Tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in ((128, 64), (128,)))
    q, k, v = (Tensor(rng.standard_normal((64, 4, 32, 16)).astype(np.float32), requires_grad=True) for _ in range(3))

    def run():
        out = F.gelu(F.layer_norm(fused.Linear.apply(x, w, b), 128, Tensor(np.ones(128, np.float32)),
                                  Tensor(np.zeros(128, np.float32))))
        att = fused.attention(q, k, v, np.triu(np.ones((32, 32), bool), 1), 0.25)[0]
        (out.sum() + att.sum()).backward()
        grads = [t.grad.numpy().copy() for t in (x, w, b, q, k, v)]
        for t in (x, w, b, q, k, v):
            t.grad = None
        return [out.numpy(), att.numpy()] + grads

    with runtime.num_threads(1):
        one = run()
    with runtime.num_threads(threads):
        assert runtime.get_num_threads() == threads
        many = run()
    for a, b_ in zip(one, many):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5)


def test_parallel_for_covers_every_row_once_and_raises_what_a_thread_raises():
    with runtime.num_threads(2):
        seen = np.zeros(1000, int)

        def count(rows):
            seen[rows] += 1

        runtime.parallel_for(count, 1000, cost=1 << 30)
        assert (seen == 1).all()

        def fail(rows):
            if rows.start > 0:
                raise ValueError("piece failed")

        with pytest.raises(ValueError, match="piece failed"):
            runtime.parallel_for(fail, 1000, cost=1 << 30)
    with pytest.raises(ValueError, match="positive integer"):
        runtime.set_num_threads(0)


def test_parallel_for_gives_each_share_to_the_same_thread_and_runs_unsplit_when_busy():
    import threading
    with runtime.num_threads(3):
        owners = [{}, {}]
        for run in owners:
            runtime.parallel_for(lambda rows, run=run: run.__setitem__(rows.start, threading.get_ident()),
                                 999, cost=1 << 30)
        assert sorted(owners[0]) == [0, 333, 666] and owners[0] == owners[1]
        assert len(set(owners[0].values())) == 3 and owners[0][0] == threading.get_ident()  # the caller: the first

        inner = []  # a job that itself calls parallel_for gets no share of the busy pool: it runs whole
        runtime.parallel_for(lambda rows: runtime.parallel_for(inner.append, 10, cost=1 << 30), 3, cost=1 << 30)
        assert sorted((r.start, r.stop) for r in inner) == [(0, 10)] * 3

        seen = np.zeros((4, 1000), int)  # four threads at once: every row still once
        def count(i):
            for _ in range(20):
                runtime.parallel_for(lambda rows: seen[i].__setitem__(rows, seen[i][rows] + 1), 1000, cost=1 << 30)
        callers = [threading.Thread(target=count, args=(i,)) for i in range(4)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(timeout=30)
        assert (seen == 20).all()


def _all_rows_at_return(n=999):
    """A split call whose helpers are slow: how many of its n rows are written when it returns."""
    import time
    out = np.zeros(n)

    def fill(rows):
        time.sleep(0.05 if rows.start else 0)
        out[rows] = 1

    runtime.parallel_for(fill, n, cost=1 << 30)
    return int(out.sum())


def test_a_failed_or_interrupted_call_leaves_the_pool_as_it_was():
    import signal
    import threading
    import time

    class Interrupt(Exception):
        pass

    with runtime.num_threads(3):
        def fail_fast_and_slow(rows):  # one helper raises at once, the other is still running
            if rows.start == 333:
                raise ValueError("piece failed")
            time.sleep(0.2 if rows.start else 0)

        with pytest.raises(ValueError, match="piece failed"):
            runtime.parallel_for(fail_fast_and_slow, 999, cost=1 << 30)
        assert _all_rows_at_return() == 999  # the next call still waits for every share

        if hasattr(signal, "pthread_kill") and threading.current_thread() is threading.main_thread():
            def interrupt(signum, frame):
                raise Interrupt
            before = signal.signal(signal.SIGUSR1, interrupt)
            try:  # a signal (as Ctrl-C) while the caller waits for a slow helper
                main = threading.get_ident()
                threading.Timer(0.05, lambda: signal.pthread_kill(main, signal.SIGUSR1)).start()
                with pytest.raises(Interrupt):
                    runtime.parallel_for(lambda rows: time.sleep(0.3 if rows.start else 0), 99, cost=1 << 30)
            finally:
                signal.signal(signal.SIGUSR1, before)
            assert _all_rows_at_return() == 999


def test_set_num_threads_from_another_thread_during_calls():
    import threading
    with runtime.num_threads(2):
        stop, errors, done = False, [], []

        def toggle():
            while not stop:
                try:
                    runtime.set_num_threads(2)
                except Exception as e:  # noqa: BLE001 - any error is the failure
                    errors.append(e)

        def call():
            seen = np.zeros(100, int)
            for _ in range(500):
                runtime.parallel_for(lambda rows: seen.__setitem__(rows, seen[rows] + 1), 100, cost=1 << 30)
            done.append((seen == 500).all())

        toggler, caller = threading.Thread(target=toggle, daemon=True), threading.Thread(target=call, daemon=True)
        toggler.start()
        caller.start()
        caller.join(timeout=60)
        stop = True
        toggler.join(timeout=10)
        assert done == [True] and not errors  # no hang, no row missed or done twice


def test_a_pool_thread_forgets_its_job_and_the_arrays_it_closes_over():
    import gc
    import weakref
    with runtime.num_threads(2):
        big = np.zeros(1000)
        runtime.parallel_for(lambda rows, big=big: big[rows].sum(), 1000, cost=1 << 30)
        ref = weakref.ref(big)
        del big
        gc.collect()
        assert ref() is None  # a worker that kept its last job would keep the array until the next one


def _split_in_child(queue):
    seen = np.zeros(100, int)
    runtime.parallel_for(lambda rows: seen.__setitem__(rows, seen[rows] + 1), 100, cost=1 << 30)
    queue.put(seen.tolist())


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_a_forked_child_has_a_pool_of_its_own():
    import multiprocessing
    with runtime.num_threads(2):
        runtime.parallel_for(lambda rows: None, 10, cost=1 << 30)  # the parent's worker thread is running
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_split_in_child, args=(queue,))
        child.start()
        assert queue.get(timeout=30) == [1] * 100  # with the parent's pool it would wait forever
        child.join(timeout=30)
