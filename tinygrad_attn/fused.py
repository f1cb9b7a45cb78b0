"""The fast paths: each a Function that does in one op what ops.py does in several, with its
backward derived in its docstring, and the gain measured on the 2-core machine we develop on.

Why they exist: an op of ops.py is one numpy call per step, and the engine keeps every
intermediate array. A transformer's training step spends much of its time outside the
matmuls, in elementwise passes over activations (layer norm and its affine, the mask, scale
and softmax of the scores, GELU, the bias) and in numpy's slow reductions over a short last
axis. Each op here makes fewer passes, keeps fewer arrays, and splits its large work by rows
over the threads of runtime.parallel_for (numpy releases the GIL inside its loops and BLAS
calls). nn.functional, nn.Embedding and the attention layers call them; under
runtime.fused_ops(False) the same calls run the compositions of basic ops instead (the
drawings use that), and the tests check that both agree, values and gradients.

  Linear                     y = x @ weight.T + bias
  LayerNorm                  layer norm over the last dim with its affine weight and bias
  GELU                       GELU (tanh form), split over the threads
  Embedding                  weight[ids], its backward without np.add.at
  ScaledDotProductAttention  softmax(q k^T * scale, masked) @ v, with dropout on the weights
"""

import functools
import math

import numpy as np

from .runtime import fused_ops_enabled, parallel_for
from .engine import Function, Tensor, default_rng, is_grad_enabled


# An array the backward needs of fewer than this many numbers (4 MiB of float32) is kept; a larger
# one that is cheap to recompute (attention's weights, GELU's tanh, layer norm's x_hat) is
# recomputed in the backward: where memory is small, speed first; where it is large, memory.
# (At batch 64: GELU keeps its tanh below 4096 tokens at d_model 64, 256 features a token.)
KEEP = 1 << 20


def _keep(size, kept_anyway=0):
    """Whether the backward keeps an array of `size` numbers (else it recomputes it): if it is smaller
    than KEEP numbers, or no larger than what it is recomputed from, which is kept anyway."""
    return size < KEEP or size <= kept_anyway


def _rows(x):
    """x (..., k) as a matrix of rows (rows, k): a view if x is contiguous."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


class Linear(Function):
    """y = x @ weight.T + bias for x (..., in_features), weight (out_features, in_features),
    bias (out_features,) or no bias: one op instead of Permute, MatMul and Add.

    With the tokens flattened, x (N, in) and the upstream gradient g (N, out):
        dx = g @ weight                     (N, out) @ (out, in)
        dweight = g^T @ x                   (out, N) @ (N, in)
        dbias = the sum of g's N rows       (out,)
    Each product is split by rows over the threads: dweight by its rows, the output features.
    Measured, forward and backward of (64, 128, 128) -> 512 features: as fast as the composition
    on one core (31.5 ms, 31.4), 17.4 ms against 30.9 on two, and two graph nodes fewer.
    """

    def forward(self, x, weight, bias=None):
        self.x, self.weight = x, weight
        x2 = _rows(x)  # (N, in)
        y = np.empty((len(x2), len(weight)), dtype=x.dtype)  # (N, out)

        def rows(r):
            np.matmul(x2[r], weight.T, out=y[r])
            if bias is not None:
                y[r] += bias

        parallel_for(rows, len(x2), cost=y.size * x.shape[-1] // 8)
        return y.reshape(x.shape[:-1] + (len(weight),))  # (..., out)

    def backward(self, g):
        x2, g2, w = _rows(self.x), _rows(g), self.weight  # (N, in), (N, out), (out, in)
        dx = np.empty_like(x2) if self.needs_input_grad[0] else None
        dw = np.empty_like(w) if self.needs_input_grad[1] else None
        if dx is not None:
            parallel_for(lambda r: np.matmul(g2[r], w, out=dx[r]), len(g2), cost=dx.size * len(w) // 8)
            dx = dx.reshape(self.x.shape)
        if dw is not None:
            parallel_for(lambda r: np.matmul(g2[:, r].T, x2, out=dw[r]), len(w), cost=dw.size * len(g2) // 8)
        db = colsum(g2) if len(self.parents) == 3 and self.needs_input_grad[2] else None
        return (dx, dw) if len(self.parents) == 2 else (dx, dw, db)


class LayerNorm(Function):
    """y = x_hat * weight + bias, x_hat = (x - mean) / sqrt(var + eps) over the last dim of n numbers
    (biased variance): ops.LayerNorm and its affine Mul and Add in one op.

    Backward: with g the upstream gradient and sigma = sqrt(var + eps),
        dweight = sum over rows of g * x_hat,   dbias = sum over rows of g
        dx = (g w - mean(g w) - x_hat * mean(g w * x_hat)) / sigma     (ops.LayerNorm's rule for g w)
    Every mean over the short last axis is a matrix-vector product, x @ (ones / n), which BLAS
    does at the speed of one elementwise pass; numpy's own reduction over a last axis of 64 is
    5-10x slower. And mean(g w) = g @ (w / n), mean(g w * x_hat) = (g * x_hat) @ (w / n): the
    product g * x_hat that dweight needs serves the second mean too. Measured, forward and
    backward of (64, 128, 128): 2.6 ms against the composition's 4.3 on one core, 1.8 on two.
    A large x_hat (_keep) is not kept but recomputed from x (which the graph keeps anyway), the
    rows' means and 1 / sigma, by the forward's own steps. Each thread runs its rows a block at a
    time (_block_rows): forward and backward of (64, 512, 256) in 26 ms instead of 39 on one core,
    16.5 instead of 28.6 on two; of (64, 128, 128) 7% faster.
    """

    def forward(self, x, weight, bias, eps):
        n = x.shape[-1]
        x2 = _rows(x)  # (N, n)
        mean_of = np.full(n, 1 / n, dtype=x.dtype)
        self.x2, self.mean, self.inv_sigma = x2, np.empty(len(x2), dtype=x.dtype), np.empty(len(x2), dtype=x.dtype)
        self.x_hat = np.empty_like(x2) if _keep(x2.size) else None
        y = np.empty_like(x2)

        def rows(r):
            np.matmul(x2[r], mean_of, out=self.mean[r])
            centered = np.subtract(x2[r], self.mean[r][:, None], out=None if self.x_hat is None else self.x_hat[r])
            var = (centered * centered) @ mean_of  # (rows,)
            inv_sigma = np.divide(1, np.sqrt(var + eps), out=self.inv_sigma[r])
            centered *= inv_sigma[:, None]  # now x_hat
            np.multiply(centered, weight, out=y[r])
            y[r] += bias

        parallel_for(_by_blocks(rows, _block_rows(n)), len(x2), cost=6 * x2.size)
        self.weight = weight
        return y.reshape(x.shape)

    def backward(self, g):
        g2, w = _rows(g), self.weight  # (N, n), (n,)
        w_mean = w / len(w)
        dx = np.empty_like(self.x2)
        pieces = {}  # first row: (sum of g * x_hat, sum of g) over the piece's rows

        def rows(r):
            x_hat = self.x_hat[r] if self.x_hat is not None else self._x_hat(r)
            gx = g2[r] * x_hat
            pieces[r.start] = colsum(gx), colsum(g2[r])
            mean_gw, mean_gwx = g2[r] @ w_mean, gx @ w_mean  # (rows,) each
            d = np.multiply(g2[r], w, out=dx[r])
            d -= mean_gw[:, None]
            np.multiply(x_hat, mean_gwx[:, None], out=gx)
            d -= gx
            d *= self.inv_sigma[r][:, None]

        parallel_for(_by_blocks(rows, _block_rows(len(w))), len(g2), cost=8 * g2.size)
        dw, db = np.zeros_like(w), np.zeros_like(w)  # (stay zeros for an input of no rows)
        for start in sorted(pieces):  # in row order: repeatable
            dw += pieces[start][0]
            db += pieces[start][1]
        return dx.reshape(g.shape), dw, db

    def _x_hat(self, r):
        """x_hat of the rows r, as the forward computed it: (x - mean) * (1 / sigma)."""
        x_hat = np.subtract(self.x2[r], self.mean[r][:, None])
        x_hat *= self.inv_sigma[r][:, None]
        return x_hat


class GELU(Function):
    """0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3): ops.GELU split over the threads.

    Backward, with t = tanh(u):
        dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx,   du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    Forward keeps x, and t only if it is small (_keep): a larger t is recomputed block by block in
    the backward (one tanh pass more, about 1% of a training step), which saves an array as large
    as x, the widest activation of a transformer block (4 * d_model features a token).
    Each thread runs its passes block by block, 64K numbers at a time, which stay in the core's
    cache from one pass to the next: the forward of 4M numbers in 3.1 ms instead of 4.9, of 33M
    in 28 ms instead of 53 (one core). Forward and backward of (64, 128, 512): 8.9 ms against
    ops.GELU's 12.2 on one core, 7.7 on two, when it kept t.
    """

    C, K = math.sqrt(2 / math.pi), 0.044715
    BLOCK = 1 << 16

    def forward(self, x):
        self.x = x.reshape(-1)  # elementwise: any split of the flat array will do
        y = np.empty_like(self.x)
        self.t = np.empty_like(self.x) if _keep(self.x.size) else None

        def part(r):
            for b in _blocks(r, self.BLOCK):
                x, out = self.x[b], y[b]
                t = self._tanh_u(x, None if self.t is None else self.t[b])
                np.add(t, 1, out=out)
                out *= x
                out *= 0.5

        parallel_for(part, len(self.x), cost=8 * len(self.x))
        return y.reshape(x.shape)

    def backward(self, g):
        g1, C, K = g.reshape(-1), self.C, self.K
        dx = np.empty_like(self.x)

        def part(r):
            for b in _blocks(r, self.BLOCK):
                x, d = self.x[b], dx[b]
                t = self.t[b] if self.t is not None else self._tanh_u(x)  # as the forward computed it
                du = x * x
                du *= 3 * C * K
                du += C  # du/dx
                np.multiply(t, t, out=d)
                np.subtract(1, d, out=d)
                d *= x
                d *= du  # x (1 - t^2) du/dx
                d += t
                d += 1
                d *= 0.5
                d *= g1[b]

        parallel_for(part, len(dx), cost=14 * len(dx))
        return (dx.reshape(g.shape),)

    def _tanh_u(self, x, out=None):
        """t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3) = x (C + C K x^2), into out or a new array."""
        t = np.multiply(x, x, out=out)
        t *= self.C * self.K
        t += self.C
        t *= x  # u
        return np.tanh(t, out=t)


def _blocks(rows, size):
    """The slice `rows` cut into slices of at most `size`."""
    return (slice(a, min(a + size, rows.stop)) for a in range(rows.start, rows.stop, size))


def _block_rows(n, numbers=1 << 18):
    """How many rows of n numbers make a block of about `numbers` numbers (256K: 1 MiB of float32),
    whose passes, one after the other, then run in the cache instead of in memory. (For layer norm,
    64K, 128K, 512K and 1M numbers measured slower at one or two threads; attention's blocks hold 1M
    scores.)"""
    return max(1, numbers // max(n, 1))


def _by_blocks(fn, size):
    """fn(rows) as a function that calls it block by block, `size` rows at a time."""
    def run(rows):
        for block in _blocks(rows, size):
            fn(block)
    return run


class Embedding(Function):
    """weight[ids] for integer ids (...) -> (..., embedding_dim); the gradient of row i is the sum
    of the upstream rows whose id is i.

    ops.Index scatters it with np.add.at, which is slow (51 ms for 32768 ids of 256 features,
    on one core). Here the rows are sorted by id and each run of equal ids summed by one
    np.add.reduceat: 27 ms there and 0.12 ms instead of 0.86 for the 2048 ids of a small batch.
    """

    def forward(self, weight, ids):
        self.shape, self.ids = weight.shape, ids.reshape(-1)
        return weight[ids]

    def backward(self, g):
        grad = np.zeros(self.shape, dtype=g.dtype)
        if self.ids.size:
            order = np.argsort(self.ids, kind="stable")
            ids = self.ids[order]
            starts = np.flatnonzero(np.diff(ids, prepend=-1))  # where each run of one id begins
            grad[ids[starts]] = np.add.reduceat(_rows(g)[order], starts, axis=0)
        return (grad,)


class ScaledDotProductAttention(Function):
    """softmax(q k^T * scale, blocked scores -inf) @ v, with dropout on the weights: one op.

    q (..., T_q, E), k (..., T_k, E), v (..., T_k, E_v) -> (..., T_q, E_v); blocked a bool array
    broadcasting to (..., T_q, T_k), True where a query may not see a key, or None. A query that
    sees no key gets zero weights and a zero output, not NaN. With dropout_p > 0 the weights P are
    multiplied by the mask M = keep / (1 - dropout_p) (the same draws as ops.Dropout) before v.

    Forward:  S = q k^T * scale,  P = softmax(S),  O = (P * M) v
    Backward, as docs/04 derives it (with M = 1 without dropout), dO the upstream gradient:
        dV = (P * M)^T dO
        dP = (dO V^T) * M
        dS = P * (dP - rowsum(dP * P))
        dQ = dS K * scale,   dK = dS^T Q * scale
    and rowsum(dP * P) = rowsum(dO * O), a sum over E_v instead of over T_k (docs/04 shows why;
    the mask M cancels the same way). Masked scores have P = 0, so they get dS = 0.

    A large P (_keep: KEEP numbers or more, and more than the q, k, v and output it is computed
    from) is not kept, as FlashAttention keeps none (without its tiling of the rows): the
    forward keeps each query row's log-sum-exp L = m + log(sum exp(S - m)), m the row's maximum,
    and the backward recomputes P = exp(S - L) from q and k, block by block. (A small P is
    kept: there recomputing costs more time than keeping it costs memory.) The forward never
    normalises its T_q x T_k array either: O = (exp(S - m) * M) v / sum exp(S - m), the
    division on (T_q, E_v) instead of (T_q, T_k), and the scale is applied to q, not to S. That
    saves B * H * T_q * T_k numbers per layer until the backward (at batch 64, 4 heads and
    T = 512, 256 MiB a layer) for one product q k^T and one exp more in the backward; the passes
    the forward saves pay for part of it. The composition (matmul, masked_fill, division,
    softmax, dropout, matmul) keeps four such arrays and its backward allocates five more. Each
    thread's share is cut into blocks whose passes stay in the cache. Measured, forward and
    backward, causal, batch 64 and 4 heads: T 128 and head_dim 32 (P kept) 29.2 ms against the
    composition's 48.4 on one core, 15.2 on two; T 512 and head_dim 64 (P recomputed) 692 ms
    against 892 on one core, 396 on two. apply() returns the output and a function that
    computes P, the weights before dropout, for heatmaps.
    """

    @classmethod
    def apply(cls, q, k, v, **options):
        """(output Tensor, a function returning the attention weights P as a Tensor without a graph)."""
        ctx = cls(q, k, v, **options)
        out = ctx.forward(q.data, k.data, v.data, **options)
        recorded = is_grad_enabled() and any(ctx.needs_input_grad)
        # What computes P holds only what it needs, not ctx (a layer keeps it until its next call), and
        # is a partial of module functions, so that a layer holding it pickles and deep-copies.
        if ctx.P is not None:
            weights = functools.partial(_given, Tensor._make(ctx.P, False, None))
        else:
            weights = functools.partial(_recomputed_weights, ctx.q, ctx.k, ctx.bias, ctx.scale, ctx.lse)
        return Tensor._make(out, recorded, ctx if recorded else None), weights

    def forward(self, q, k, v, blocked, scale, dropout_p, rng):
        self.q, self.k, self.v, self.scale = q, k, v, q.dtype.type(scale)
        lead, T_q, T_k = q.shape[:-2], q.shape[-2], k.shape[-2]  # the batch dims (...), queries, keys
        self.scores_shape = lead + (T_q, T_k)
        self.lse = np.empty(lead + (T_q, 1), dtype=q.dtype)  # L: each row's log-sum-exp (0 for a row all blocked)
        self.out = np.empty(lead + (T_q, v.shape[-1]), dtype=q.dtype)  # (..., T_q, E_v)
        # -inf where blocked, else 0, added to the scores: 3x faster than writing -inf where blocked, and
        # PyTorch's SDPA too adds its boolean mask as such a bias. (So a blocked score that is itself inf
        # or NaN makes its row NaN, as in PyTorch's SDPA, where masked_fill would have hidden it.)
        self.bias = None
        if blocked is not None and blocked.any():  # (a decoding step's one query blocks nothing: no need to mask)
            bias = np.where(blocked, q.dtype.type(-np.inf), q.dtype.type(0))  # blocked's own shape: small
            self.bias = np.broadcast_to(bias, self.scores_shape)
        kept_anyway = q.size + k.size + 2 * v.size  # q, k, v, and the output, as large as v
        self.P = np.empty(self.scores_shape, dtype=q.dtype) if _keep(math.prod(self.scores_shape), kept_anyway) else None
        self.M, weight_scale = None, 1.0
        if dropout_p > 0:  # drawn here, whole, as ops.Dropout draws them: the same generator, the same order
            keep = rng.random(self.scores_shape, dtype=q.dtype) >= dropout_p
            weight_scale = 1 / (1 - dropout_p) if dropout_p < 1 else 0.0
            self.M = keep * q.dtype.type(weight_scale)

        def rows(r):
            E = _scores(q, k, self.bias, self.scale, r)  # S, blocked: -inf
            m = _row_shift(E, q[r], k[r], v[r], self.scale, weight_scale)  # (..., T_q, 1), or None for 0
            if m is not None:
                E -= m
            np.exp(E, out=E)  # exp(S - m): P times each row's sum
            total = rowsum(E)
            total[total == 0] = 1
            O = np.matmul(E if self.M is None else E * self.M[r], v[r], out=self.out[r])  # (P * M) v * total
            O /= total
            L = np.log(total, out=self.lse[r])  # L = m + log(sum exp(S - m))
            if m is not None:
                L += m
            if self.P is not None:  # small enough to keep
                np.divide(E, total, out=self.P[r])

        self._split(rows)
        return self.out

    def backward(self, grad):
        q, k, v, M, scale = self.q, self.k, self.v, self.M, self.scale
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)

        def rows(r):
            P = self.P[r] if self.P is not None else _attention_weights(q, k, self.bias, scale, self.lse, r)
            dO = grad[r]
            np.matmul(_T(P if M is None else P * M[r]), dO, out=dv[r])  # dV = (P * M)^T dO
            dP = dO @ _T(v[r])  # dP = (dO V^T) * M
            if M is not None:
                dP *= M[r]
            dP -= rowsum(dO * self.out[r])  # rowsum(dP * P) = rowsum(dO * O)
            dS = np.multiply(dP, P, out=dP)  # dS = P * (dP - rowsum(dP * P))
            np.multiply(np.matmul(dS, k[r], out=dq[r]), scale, out=dq[r])  # dQ = dS K * scale
            np.multiply(np.matmul(_T(dS), q[r], out=dk[r]), scale, out=dk[r])  # dK = dS^T Q * scale

        self._split(rows)
        return dq, dk, dv

    def _split(self, rows):
        """rows(r) over slices r of the first batch dim, split over the threads and, on each, into blocks
        of about 1M scores, whose passes run in the cache; 2-D inputs (no batch) in one call."""
        if len(self.scores_shape) == 2:
            return rows(slice(None))
        size = math.prod(self.scores_shape)
        per_item = size // max(self.scores_shape[0], 1)  # scores of one batch element
        matmul_cost = self.k.shape[-1] + self.v.shape[-1]  # per score: a multiply-add per feature, both products
        parallel_for(_by_blocks(rows, _block_rows(per_item, 1 << 20)), self.scores_shape[0],
                     cost=size * (6 + matmul_cost // 4))


def _row_shift(S, q, k, v, scale, weight_scale):
    """m, what each row of the scores S = q k^T * scale (+ bias) is lowered by before exp. Softmax is
    the same for any m, which is there only to keep exp from overflowing, so m = 0 (returned as None)
    when no score can be large: |S_ij| <= |q_i| |k_j| |scale| (Cauchy-Schwarz), at most the largest
    norms' product, and up to _safe_score neither exp(S) nor a row's sum nor (exp(S) * M) v can
    overflow (M the dropout's scale weight_scale, at most 1 / (1 - p)), nor can a row's every term
    be 0. Else m is each row's maximum (..., T_q, 1), 0 for a row all blocked. The norms and |v|
    cost a pass over q, k and v; the maximum over the short last axis they save costs numpy about
    three passes over S (on (64, 4, 32, 32): 266 us, an exp 94). Measured, forward and backward of
    attention on one core: -13% at T 32 and head_dim 16, -6% at T 128, -4% at T 512.
    """
    if S.size > (q.size + k.size + v.size) // 2:  # (else the norms would cost more than the maximum: decoding)
        largest = abs(scale) * np.sqrt(rowsum(q * q).max(initial=0) * rowsum(k * k).max(initial=0))
        v_max = max(1.0, float(np.abs(v).max(initial=0)) * weight_scale)
        if largest <= _safe_score(S.dtype, S.shape[-1], v_max):  # (False if it is inf or NaN)
            return None
    m = S.max(axis=-1, keepdims=True, initial=-np.inf)  # (faster than max() without initial)
    m[~np.isfinite(m)] = 0  # a row all blocked: exp(-inf - 0) = 0, not NaN
    return m


def _safe_score(dtype, T_k, v_max):
    """The largest score s for which T_k * exp(s) * v_max, the most a row's sum or an output number of
    the unnormalised softmax can be, stays below the dtype's largest number, with a factor e to spare,
    and exp(-s) above its smallest normal one: at T_k = 512 and |v| <= 10, 79 in float32, 700 in
    float64, 1.5 in float16."""
    info = np.finfo(dtype)
    return min(math.log(info.max) - 1 - math.log(max(T_k, 1) * v_max), -math.log(info.tiny) - 1)


def _scores(q, k, bias, scale, r=slice(None)):
    """S = (q * scale) k^T + bias for the rows r of the first batch dim: a new array. (The scale on
    q's (T_q, E) block is cheaper than on S's (T_q, T_k).)"""
    S = np.matmul(q[r] * scale, _T(k[r]))
    if bias is not None:
        S += bias[r]
    return S


def _attention_weights(q, k, bias, scale, lse, r=slice(None)):
    """P = softmax(S) = exp(S - L) for the rows r, L the rows' log-sum-exp the forward kept.

    S - L comes out of one product, a pass over (T_q, T_k) fewer: a column -L beside q * scale
    and a column of ones beside k make the dot product of row i and key j q_i k_j * scale - L_i."""
    q_aug = np.concatenate([q[r] * scale, -lse[r]], axis=-1)  # (..., T_q, E + 1)
    k_aug = np.concatenate([k[r], np.ones(k[r].shape[:-1] + (1,), dtype=k.dtype)], axis=-1)  # (..., T_k, E + 1)
    P = np.matmul(q_aug, _T(k_aug))  # S - L
    if bias is not None:
        P += bias[r]
    return np.exp(P, out=P)


def _recomputed_weights(q, k, bias, scale, lse):
    """_attention_weights of every row, as a Tensor without a graph."""
    return Tensor._make(_attention_weights(q, k, bias, scale, lse), False, None)


def _given(x):
    """x itself: what a partial returns for weights already computed."""
    return x


def _T(x):
    """The matrix transpose of a batch of matrices: a view."""
    return np.swapaxes(x, -1, -2)


def rowsum(x):
    """x (..., n) summed over its last axis, as (..., 1): a matrix-vector product with ones, because
    numpy's sum over a short last axis is slow (on (64, 4, 32, 32): 0.02 ms, where sum(axis=-1) takes 0.13)."""
    return (x @ np.ones(x.shape[-1], dtype=x.dtype))[..., None]


def colsum(x):
    """The rows of x (N, n) summed, (n,): ones @ x, 2-5x faster than x.sum(axis=0) (on (2048, 64): 6 us, not 36)."""
    return np.ones(len(x), dtype=x.dtype) @ x


def attention(queries, keys, values, blocked, scale, dropout_p=0.0):
    """Scaled dot-product attention: (context (..., T_q, E_v), a function returning the attention
    weights (..., T_q, T_k) before dropout, without a graph). queries (..., T_q, E), keys
    (..., T_k, E), values (..., T_k, E_v); blocked as ScaledDotProductAttention takes it.

    One op, or under runtime.fused_ops(False) the steps it fuses, drawn as such."""
    if fused_ops_enabled():
        return ScaledDotProductAttention.apply(queries, keys, values, blocked=blocked, scale=scale,
                                               dropout_p=dropout_p, rng=default_rng())
    attn_scores = queries @ keys.transpose(-2, -1)  # (..., T_q, T_k)
    if blocked is not None:
        attn_scores = attn_scores.masked_fill(blocked, float("-inf"))
    attn_weights = (attn_scores * scale).softmax(dim=-1)  # (..., T_q, T_k)
    context = attn_weights.dropout(dropout_p) @ values  # (..., T_q, E_v)
    return context, functools.partial(_given, attn_weights.detach())
