"""Check autograd against finite differences, the way every op in this project is tested."""

import numpy as np

from .tensor import Tensor


class GradcheckError(RuntimeError):
    """An analytical gradient disagrees with the finite-difference one."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, raise_exception=True):
    """Compare the gradients of fn(*inputs) from backward() with central finite differences.

    The output is projected onto a *random* upstream gradient u (loss = sum(fn(x) * u)), so a
    wrong gradient cannot hide behind a uniform one. Inputs that require a gradient should be
    float64 (float32 finite differences are too coarse). Returns True, or raises GradcheckError
    naming the input and the worst element (returns False if raise_exception=False).
    """
    inputs = list(inputs)
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck needs at least one input with requires_grad=True")
    for i in wrt:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck input {i} is {inputs[i].dtype}; use float64 for finite differences")
    out = fn(*inputs)
    u = np.random.default_rng(seed).standard_normal(out.shape)

    def projected():
        return float(np.sum(fn(*inputs).data * u))

    for i in wrt:
        inputs[i].grad = None
    out.backward(gradient=u)
    for i in wrt:
        x = inputs[i]
        analytic = np.zeros_like(x.data) if x.grad is None else x.grad.data
        numeric = np.zeros_like(x.data)
        flat = x.data.reshape(-1)  # a view: perturbing it perturbs x
        if not np.shares_memory(flat, x.data):
            raise ValueError(f"gradcheck input {i} must be contiguous")
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            plus = projected()
            flat[j] = orig - eps
            minus = projected()
            flat[j] = orig
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        bad = ~np.isclose(analytic, numeric, atol=atol, rtol=rtol)
        if bad.any():
            k = np.unravel_index(np.argmax(np.abs(analytic - numeric)), x.shape)
            msg = (f"gradient of input {i} (shape {x.shape}) is wrong at {bad.sum()} of {x.data.size} elements; "
                   f"worst at index {tuple(int(n) for n in k)}: backward gave {analytic[k]:.6g}, "
                   f"finite differences {numeric[k]:.6g}")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
