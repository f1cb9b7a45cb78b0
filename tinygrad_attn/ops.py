"""Every differentiable op: a Function with its forward and, a few lines below, its backward.

backward(grad) returns one gradient per input, of the *output's* broadcast shape if that is
easier: the engine (engine.py) sums each back to its input's shape and accumulates it.
The comment on each backward gives the local derivative.
"""

import math

import numpy as np

from .engine import Function

# ---------------------------------------------------------------------------------------
# Elementwise binary ops (inputs may broadcast; the engine undoes it)
# ---------------------------------------------------------------------------------------

class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, g):  # d(a+b)/da = d(a+b)/db = 1
        return g, g


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, g):  # d(a-b)/da = 1, d(a-b)/db = -1
        return g, (-g if self.needs_input_grad[1] else None)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):  # d(ab)/da = b, d(ab)/db = a
        ga, gb = self.needs_input_grad
        return (g * self.b if ga else None), (g * self.a if gb else None)


class Div(Function):
    def forward(self, a, b):
        self.b = b
        self.out = a / b
        return self.out

    def backward(self, g):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
        ga = g / self.b
        return ga, (-ga * self.out if self.needs_input_grad[1] else None)


def _rows(x):
    """x (..., k) as a matrix of rows (rows, k); not reshape(-1, k), which an empty dim makes ambiguous."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _matmul(a, b):
    """a @ b; a batch of rows times one matrix runs as one 2-D product.

    numpy runs (B, T, k) @ (k, n) as B small products; flattened to (B*T, k) @ (k, n) it is
    one BLAS call (measured 1.3-2.7x faster for the copy model's layers).
    """
    if b.ndim == 2 and a.ndim > 2:
        return (_rows(a) @ b).reshape(a.shape[:-1] + b.shape[-1:])  # (..., n)
    return a @ b


class MatMul(Function):
    """a @ b with numpy's rules: batched, broadcasting over batch dims, 1-D operands promoted."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return _matmul(a, b)

    def backward(self, g):  # d(a@b): ga = g @ b^T, gb = a^T @ g
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a  # (1, n): a row vector
        b2 = b[:, None] if b.ndim == 1 else b  # (n, 1): a column vector
        g2 = g[..., None] if b.ndim == 1 else g  # restore the dims that 1-D operands dropped:
        g2 = g2[..., None, :] if a.ndim == 1 else g2  # b's (last) first, so 1-D @ 1-D works too
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = _matmul(g2, np.swapaxes(b2, -1, -2))
            ga = ga[..., 0, :] if a.ndim == 1 else ga
        if self.needs_input_grad[1]:
            if b2.ndim == 2 and a2.ndim > 2:  # weight shared over a batch: one big matmul, no sum after
                gb = _rows(a2).T @ _rows(g2)  # (n, m)
            else:
                gb = np.swapaxes(a2, -1, -2) @ g2
            gb = gb[..., 0] if b.ndim == 1 else gb
        return ga, gb


# ---------------------------------------------------------------------------------------
# Elementwise unary ops
# ---------------------------------------------------------------------------------------

class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, g):  # d(-x)/dx = -1
        return (-g,)


class Pow(Function):
    def forward(self, x, exponent):
        self.x, self.exponent = x, exponent
        return x ** exponent

    def backward(self, g):  # d(x^p)/dx = p x^(p-1); for p = 0 that is 0, also at x = 0 (where 0 * 0^-1 is NaN)
        return (g * self.exponent * self.x ** (self.exponent - 1) if self.exponent else np.zeros_like(g),)


class Exp(Function):
    def forward(self, x):
        self.out = np.exp(x)
        return self.out

    def backward(self, g):  # d(e^x)/dx = e^x
        return (g * self.out,)


class Log(Function):
    def forward(self, x):
        self.x = x
        return np.log(x)

    def backward(self, g):  # d(log x)/dx = 1/x
        return (g / self.x,)


class Sqrt(Function):
    def forward(self, x):
        self.out = np.sqrt(x)
        return self.out

    def backward(self, g):  # d(sqrt x)/dx = 1 / (2 sqrt x)
        return (g / (2 * self.out),)


class Tanh(Function):
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, g):  # d(tanh x)/dx = 1 - tanh^2 x
        return (g * (1 - self.out * self.out),)


class Sigmoid(Function):
    def forward(self, x):
        self.out = 0.5 * (1 + np.tanh(0.5 * x))  # = 1/(1+e^-x), without overflow for large -x
        return self.out

    def backward(self, g):  # d(sigma)/dx = sigma (1 - sigma)
        return (g * self.out * (1 - self.out),)


class ReLU(Function):
    def forward(self, x):
        self.off = x <= 0  # not ~(x > 0): NaN is neither, and passes through as in PyTorch
        return np.where(self.off, 0, x)

    def backward(self, g):  # d(max(x, 0))/dx = 1 where x > 0 else 0 (0 at x == 0, as PyTorch)
        return (np.where(self.off, 0, g),)


class Abs(Function):
    def forward(self, x):
        self.x = x
        return np.abs(x)

    def backward(self, g):  # d|x|/dx = sign(x), 0 at x == 0 as PyTorch
        return (g * np.sign(self.x),)


class GELU(Function):
    """GELU, tanh form (GPT-2): 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)."""

    C, K = float(np.sqrt(2 / np.pi)), 0.044715

    def forward(self, x):
        self.shape, x = x.shape, np.atleast_1d(x)  # a 0-d x would give numpy scalars, which out= cannot take
        # In place where it is safe: each temporary is as large as the MLP's hidden activation.
        self.x, self.x2 = x, x * x  # x * x * x, not x ** 3: numpy's float pow is ~50x slower
        u = self.x2 * (self.C * self.K)
        u += self.C
        u *= x  # u = sqrt(2/pi) (x + 0.044715 x^3)
        self.t = np.tanh(u, out=u)
        out = self.t + 1
        out *= x
        out *= 0.5
        return out.reshape(self.shape)  # 0.5 x (1 + t)

    def backward(self, g):
        # d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx,  du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
        du = self.x2 * (3 * self.C * self.K)
        du += self.C
        d = self.t * self.t
        np.subtract(1, d, out=d)
        d *= self.x
        d *= du  # x (1 - t^2) du/dx
        d += self.t
        d += 1
        d *= 0.5
        d *= g
        return (d.reshape(self.shape),)


class Cast(Function):
    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):  # the identity, back in the input's dtype
        return (g.astype(self.in_dtype),)


# ---------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------

def _expand_reduced(grad, shape, dim, keepdim):
    """Put back the dims a reduction removed, so grad broadcasts against the input."""
    if not keepdim:
        grad = np.expand_dims(grad, tuple(range(len(shape))) if dim is None else dim)
    return grad


class Sum(Function):
    def forward(self, x, dim, keepdim):
        self.shape, self.dim, self.keepdim = x.shape, dim, keepdim
        return np.asarray(x.sum(axis=dim, keepdims=keepdim))

    def backward(self, g):  # every input element contributes once: copy g back over the summed dims
        return (np.broadcast_to(_expand_reduced(g, self.shape, self.dim, self.keepdim), self.shape),)


class Mean(Function):
    def forward(self, x, dim, keepdim):
        self.shape, self.dim, self.keepdim = x.shape, dim, keepdim
        out = np.asarray(x.mean(axis=dim, keepdims=keepdim))
        self.n = x.size // max(out.size, 1)
        return out

    def backward(self, g):  # each of the n averaged elements gets g / n
        return (np.broadcast_to(_expand_reduced(g, self.shape, self.dim, self.keepdim) / self.n, self.shape),)


class Var(Function):
    """sum((x - mean)^2) / (n - correction) over dim."""

    def forward(self, x, dim, keepdim, correction):
        self.shape, self.dim, self.keepdim = x.shape, dim, keepdim
        self.centered = x - x.mean(axis=dim, keepdims=True)
        n = x.size if dim is None else int(np.prod([x.shape[d] for d in dim]))
        self.denom = max(n - correction, 0)  # 0 when n <= correction: inf or NaN, as in PyTorch
        return np.asarray((self.centered ** 2).sum(axis=dim, keepdims=keepdim) / self.denom)

    def backward(self, g):  # d var / dx_i = 2 (x_i - mean) / (n - correction); the mean's own term sums to 0
        g = _expand_reduced(g, self.shape, self.dim, self.keepdim)
        return (g * (2 / self.denom if self.denom else math.inf) * self.centered,)


class Max(Function):
    """The largest value over dim, like torch.amax: tied maxima share the gradient equally."""

    def forward(self, x, dim, keepdim):
        self.x, self.dim, self.keepdim = x, dim, keepdim
        self.out = np.asarray(x.max(axis=dim, keepdims=keepdim))
        return self.out

    def backward(self, g):  # 1 at the argmax (1/k each for a k-way tie), 0 elsewhere
        out = _expand_reduced(self.out, self.x.shape, self.dim, self.keepdim)
        is_max = self.x == out
        share = is_max / is_max.sum(axis=self.dim, keepdims=True)
        return (_expand_reduced(g, self.x.shape, self.dim, self.keepdim) * share.astype(self.x.dtype),)


# ---------------------------------------------------------------------------------------
# Softmax family (fused for stability; backward in closed form)
# ---------------------------------------------------------------------------------------

def _shifted_exp(x, dim):
    """exp(x - max(x)) and its sum along dim. A row of all -inf keeps max 0 so it gives zeros, not NaN."""
    m = x.max(axis=dim, keepdims=True, initial=-np.inf)  # initial: numpy's max has no identity for an empty dim
    m = np.where(m == -np.inf, 0, m)  # np.where, not m[...] = 0: a 0-d x gives numpy scalars
    shifted = x - m
    e = np.exp(shifted)
    s = e.sum(axis=dim, keepdims=True)
    s = np.where(s == 0, 1, s)  # a fully masked row: 0 / 1 = 0
    return shifted, e, s


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max)).

    Backward, the Jacobian-vector product in closed form: dy_i/dx_j = y_i (delta_ij - y_j), so
    dx_j = sum_i g_i y_i (delta_ij - y_j) = y_j (g_j - sum_i g_i y_i).
    A row that is entirely -inf (every key masked) gives y = 0 and a zero gradient.
    """

    def forward(self, x, dim):
        _, e, s = _shifted_exp(x, dim)
        self.dim = dim
        e /= s
        self.y = e
        return e

    def backward(self, g):
        y = self.y
        return (y * (g - (g * y).sum(axis=self.dim, keepdims=True)),)


class LogSoftmax(Function):
    """y = x - max - log(sum(exp(x - max))).

    Backward: dy_i/dx_j = delta_ij - softmax_j, so dx_j = g_j - softmax_j * sum_i g_i.
    A row that is entirely -inf stays -inf.
    """

    def forward(self, x, dim):
        shifted, e, s = _shifted_exp(x, dim)
        self.dim = dim
        self.y = shifted - np.log(s)
        return self.y

    def backward(self, g):
        return (g - np.exp(self.y) * g.sum(axis=self.dim, keepdims=True),)


class CrossEntropy(Function):
    """Mean (or sum, or none) of -log softmax(logits)[target] over targets != ignore_index.

    logits (N, C) with target (N,); the checks live in nn.functional.cross_entropy.
    Fused with log-softmax: with p = softmax(logits), d loss_n / d logits_n = p - onehot(target_n),
    divided by the number of counted targets for the mean. If every target is ignored the
    mean is 0 with a zero gradient (PyTorch gives NaN there).
    """

    def forward(self, logits, target, ignore_index, reduction):
        n = logits.shape[0]
        valid = target != ignore_index
        safe = np.where(valid, target, 0)
        shifted, e, s = _shifted_exp(logits, 1)
        logp = shifted[np.arange(n), safe] - np.log(s[:, 0])  # log-probability of each target
        losses = np.where(valid, -logp, 0).astype(logits.dtype)
        self.p, self.safe, self.valid, self.reduction = e / s, safe, valid, reduction
        self.count = max(int(valid.sum()), 1)
        if reduction == "none":
            return losses
        total = losses.sum()
        return np.asarray(total / self.count if reduction == "mean" else total, dtype=logits.dtype)

    def backward(self, g):
        grad = self.p.copy()
        grad[np.arange(len(grad)), self.safe] -= 1  # p - onehot(target)
        scale = self.valid.astype(grad.dtype)[:, None]  # ignored targets get no gradient
        if self.reduction == "none":
            scale *= g[:, None]
        else:
            scale *= g / self.count if self.reduction == "mean" else g
        return (grad * scale,)


# ---------------------------------------------------------------------------------------
# Normalisation and regularisation
# ---------------------------------------------------------------------------------------

class LayerNorm(Function):
    """x_hat = (x - mean) / sqrt(var + eps) over the last `ndims` dims (biased variance).

    The affine part (x_hat * weight + bias) is composed from Mul and Add by nn.functional.
    Backward: with sigma = sqrt(var + eps) and n normalised elements,
        dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sigma
    (the two means are the derivative through the mean and the variance).
    """

    def forward(self, x, ndims, eps):
        self.axes = tuple(range(x.ndim - ndims, x.ndim))
        # The mean summed in float64: a float32 sum of [12345.678] * 3 rounds, and its error / sigma is not small.
        mu = x.mean(axis=self.axes, keepdims=True, dtype=np.float64).astype(x.dtype)
        centered = x - mu
        var = (centered * centered).mean(axis=self.axes, keepdims=True)
        self.inv_sigma = 1 / np.sqrt(var + eps)
        self.x_hat = centered * self.inv_sigma
        return self.x_hat

    def backward(self, g):
        x_hat, axes = self.x_hat, self.axes
        dx = g - g.mean(axis=axes, keepdims=True) - x_hat * (g * x_hat).mean(axis=axes, keepdims=True)
        return (dx * self.inv_sigma,)


class Dropout(Function):
    """Inverted dropout: keep each element with probability 1-p and scale it by 1/(1-p), so the
    expected value is unchanged and evaluation needs no rescaling. p = 1 drops everything."""

    def forward(self, x, p, rng):
        keep = rng.random(x.shape, dtype=x.dtype if x.dtype.kind == "f" else np.float64) >= p
        self.mask = keep * (x.dtype.type(1 / (1 - p)) if p < 1 else x.dtype.type(0))
        return x * self.mask

    def backward(self, g):  # the same mask: d(x * m)/dx = m
        return (g * self.mask,)


# ---------------------------------------------------------------------------------------
# Shape ops (views where numpy allows)
# ---------------------------------------------------------------------------------------

class Reshape(Function):
    is_view = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):  # the same numbers, back in the input's shape
        return (g.reshape(self.in_shape),)


class Permute(Function):
    is_view = True

    def forward(self, x, dims):
        self.dims = dims
        return x.transpose(dims)

    def backward(self, g):  # undo the permutation
        return (g.transpose(np.argsort(self.dims)),)


class Expand(Function):
    is_view = True

    def forward(self, x, shape):
        return np.broadcast_to(x, shape)

    def backward(self, g):  # the engine's unbroadcast sums g back over the expanded dims
        return (g,)


class Index(Function):
    """x[index]; the gradient is scattered back, with repeated indices adding up."""

    def forward(self, x, index):
        self.shape, self.index = x.shape, index
        parts = index if isinstance(index, tuple) else (index,)
        self.advanced = any(isinstance(i, np.ndarray) for i in parts)
        self.is_view = not self.advanced  # basic slicing moves no number; an index array gathers
        return x[index]

    def backward(self, g):
        grad = np.zeros(self.shape, dtype=g.dtype)
        if self.advanced:
            np.add.at(grad, self.index, g)  # += for each occurrence, so weight[[1, 1]] counts twice
        else:
            grad[self.index] = g
        return (grad,)


class Cat(Function):
    def forward(self, *xs, dim):
        self.dim = dim
        self.bounds = np.cumsum([x.shape[dim] for x in xs])[:-1]
        return np.concatenate(xs, axis=dim)

    def backward(self, g):  # each input gets its own slice of g
        return tuple(np.split(g, self.bounds, axis=self.dim))


class Where(Function):
    def forward(self, x, y, cond):
        self.cond = cond
        return np.where(cond, x, y)

    def backward(self, g):  # g goes to x where cond holds, to y elsewhere
        gx = np.where(self.cond, g, 0) if self.needs_input_grad[0] else None
        gy = np.where(self.cond, 0, g) if self.needs_input_grad[1] else None
        return gx, gy


class MaskedFill(Function):
    def forward(self, x, mask, value):
        self.mask = mask
        return np.where(mask, x.dtype.type(value), x)

    def backward(self, g):  # filled positions no longer depend on x
        return (np.where(self.mask, 0, g),)
