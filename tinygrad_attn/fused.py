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

import math

import numpy as np

from .runtime import fused_ops_enabled, parallel_for
from .engine import Function, Tensor, default_rng, is_grad_enabled


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
    """

    def forward(self, x, weight, bias, eps):
        n = x.shape[-1]
        x2 = _rows(x)  # (N, n)
        mean_of = np.full(n, 1 / n, dtype=x.dtype)
        self.x_hat, self.inv_sigma = np.empty_like(x2), np.empty(len(x2), dtype=x.dtype)
        y = np.empty_like(x2)

        def rows(r):
            centered = np.subtract(x2[r], (x2[r] @ mean_of)[:, None], out=self.x_hat[r])
            var = (centered * centered) @ mean_of  # (rows,)
            inv_sigma = np.divide(1, np.sqrt(var + eps), out=self.inv_sigma[r])
            centered *= inv_sigma[:, None]  # now x_hat
            np.multiply(centered, weight, out=y[r])
            y[r] += bias

        parallel_for(rows, len(x2), cost=6 * x2.size)
        self.weight = weight
        return y.reshape(x.shape)

    def backward(self, g):
        g2, x_hat, w = _rows(g), self.x_hat, self.weight  # (N, n), (N, n), (n,)
        w_mean = w / len(w)
        dx = np.empty_like(x_hat)
        pieces = {}  # first row: (sum of g * x_hat, sum of g) over the piece's rows

        def rows(r):
            gx = g2[r] * x_hat[r]
            pieces[r.start] = colsum(gx), colsum(g2[r])
            mean_gw, mean_gwx = g2[r] @ w_mean, gx @ w_mean  # (rows,) each
            d = np.multiply(g2[r], w, out=dx[r])
            d -= mean_gw[:, None]
            np.multiply(x_hat[r], mean_gwx[:, None], out=gx)
            d -= gx
            d *= self.inv_sigma[r][:, None]

        parallel_for(rows, len(g2), cost=8 * g2.size)
        dw, db = (sum(p) for p in zip(*(pieces[start] for start in sorted(pieces))))  # in row order: repeatable
        return dx.reshape(g.shape), dw, db


class GELU(Function):
    """0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3): ops.GELU split over the threads.

    Backward, with t = tanh(u):
        dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx,   du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    Forward keeps x and t; x^2 is recomputed, cheaper than keeping a third array as large.
    Each thread runs its passes block by block, 64K numbers at a time, which stay in the core's
    cache from one pass to the next: the forward of 4M numbers in 3.1 ms instead of 4.9, of 33M
    in 28 ms instead of 53 (one core). Forward and backward of (64, 128, 512): 8.9 ms against
    ops.GELU's 12.2 on one core, 7.7 on two.
    """

    C, K = math.sqrt(2 / math.pi), 0.044715
    BLOCK = 1 << 16

    def forward(self, x):
        self.x = x.reshape(-1)  # elementwise: any split of the flat array will do
        self.t, y = np.empty_like(self.x), np.empty_like(self.x)
        C, K = self.C, self.K

        def part(r):
            for b in _blocks(r, self.BLOCK):
                x, t, out = self.x[b], self.t[b], y[b]
                np.multiply(x, x, out=t)
                t *= C * K
                t += C
                t *= x  # u
                np.tanh(t, out=t)
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
                x, t, d = self.x[b], self.t[b], dx[b]
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

        parallel_for(part, len(dx), cost=10 * len(dx))
        return (dx.reshape(g.shape),)


def _blocks(rows, size):
    """The slice `rows` cut into slices of at most `size`."""
    return (slice(a, min(a + size, rows.stop)) for a in range(rows.start, rows.stop, size))


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

    Next to the composition (matmul, masked_fill, division, softmax, dropout, matmul) it works
    in place: it allocates and keeps one (T_q, T_k) array, P, where the composition keeps four
    (the scores, masked, scaled, and the weights), and its backward passes over such arrays three
    times where the chain of backward passes allocates five. It splits the batch over the threads,
    and each thread's share into blocks whose passes stay in the cache. Measured, forward and
    backward, (64, 4, 128, 32) causal: 25.6 ms against the composition's 42.8 on one core, 14.5
    on two. apply() returns the output and P, the weights before dropout, for heatmaps.
    """

    @classmethod
    def apply(cls, q, k, v, **options):
        """(output Tensor, attention weights P as a Tensor without a graph): Function.apply, and P."""
        ctx = cls(q, k, v, **options)
        out = ctx.forward(q.data, k.data, v.data, **options)
        recorded = is_grad_enabled() and any(ctx.needs_input_grad)
        return Tensor._make(out, recorded, ctx if recorded else None), Tensor._make(ctx.P, False, None)

    def forward(self, q, k, v, blocked, scale, dropout_p, rng):
        self.q, self.k, self.v, self.scale = q, k, v, scale
        lead = q.shape[:-2]  # the batch dims (...)
        self.P = np.empty(lead + (q.shape[-2], k.shape[-2]), dtype=q.dtype)  # (..., T_q, T_k)
        self.out = np.empty(lead + (q.shape[-2], v.shape[-1]), dtype=q.dtype)  # (..., T_q, E_v)
        if blocked is not None:  # (a decoding step's one query blocks nothing: no need to mask)
            blocked = np.broadcast_to(blocked, self.P.shape) if blocked.any() else None
        self.M = None
        if dropout_p > 0:  # drawn here, whole, as ops.Dropout draws them: the same generator, the same order
            keep = rng.random(self.P.shape, dtype=q.dtype) >= dropout_p
            self.M = keep * q.dtype.type(1 / (1 - dropout_p) if dropout_p < 1 else 0)

        def rows(r):
            S = np.matmul(q[r], _T(k[r]), out=self.P[r])  # S = q k^T * scale
            S *= scale
            if blocked is not None:
                np.copyto(S, -np.inf, where=blocked[r])
            softmax_(S)  # P
            np.matmul(S if self.M is None else S * self.M[r], v[r], out=self.out[r])  # O = (P * M) v

        self._split(rows)
        return self.out

    def backward(self, grad):
        q, k, v, M, scale = self.q, self.k, self.v, self.M, self.scale
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)

        def rows(r):
            P, dO = self.P[r], grad[r]
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
        if self.P.ndim == 2:
            return rows(slice(None))
        per_item = self.P[:1].size  # scores of one batch element
        matmul_cost = self.q.shape[-1] + self.v.shape[-1]  # per score: a multiply-add per feature, both products

        def blocks(r):
            for b in _blocks(r, max(1, (1 << 20) // max(per_item, 1))):
                rows(b)

        parallel_for(blocks, len(self.P), cost=self.P.size * (6 + matmul_cost // 4))


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


def softmax_(S):
    """Softmax over the last axis of S, in place. A row of -inf keeps a max of 0, so it gives
    zeros, not NaN (as ops.Softmax); an empty row is fine too. max(initial=-inf) is numpy's
    fast path for the row maxima: 0.25 ms on (64, 4, 32, 32) scores, where max() takes 0.43."""
    m = S.max(axis=-1, keepdims=True, initial=-np.inf)
    m[~np.isfinite(m)] = 0
    S -= m
    np.exp(S, out=S)
    s = rowsum(S)
    s[s == 0] = 1
    S /= s


def attention(queries, keys, values, blocked, scale, dropout_p=0.0):
    """Scaled dot-product attention: (context (..., T_q, E_v), attention weights (..., T_q, T_k)
    before dropout, without a graph). queries (..., T_q, E), keys (..., T_k, E), values
    (..., T_k, E_v); blocked as ScaledDotProductAttention takes it.

    One op, or under runtime.fused_ops(False) the steps it fuses, drawn as such."""
    if fused_ops_enabled():
        return ScaledDotProductAttention.apply(queries, keys, values, blocked=blocked, scale=scale,
                                               dropout_p=dropout_p, rng=default_rng())
    attn_scores = queries @ keys.transpose(-2, -1)  # (..., T_q, T_k)
    if blocked is not None:
        attn_scores = attn_scores.masked_fill(blocked, float("-inf"))
    attn_weights = (attn_scores * scale).softmax(dim=-1)  # (..., T_q, T_k)
    context = attn_weights.dropout(dropout_p) @ values  # (..., T_q, E_v)
    return context, attn_weights.detach()
