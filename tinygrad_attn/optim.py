"""Optimizers, gradient clipping and a learning-rate schedule, with PyTorch's update rules.

This sits on the engine only: a parameter is a Tensor with requires_grad=True, its gradient
a Tensor in `.grad` (None when backward() never reached it; such parameters are skipped,
as in PyTorch). Updates are in place on the arrays `p.data` and `p.grad.data`, so the model
keeps the same arrays and their dtype (float32 stays float32).

The PyTorch `param_groups` are cut down to one group: `optimizer.params` (a list) and
`optimizer.lr`, which a schedule may set before each `step()`.
"""

import math
import numbers

import numpy as np

from .tensor import Tensor, no_grad


def _finite(name, value, positive=False):
    """value, if it is a finite number >= 0 (> 0 if positive): a NaN or inf hyper-parameter would
    silently make every weight NaN, and `value < 0` alone lets NaN through (NaN compares False)."""
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value}")
    return value


class Optimizer:
    """The base: holds the parameters and one state dict per parameter. Subclasses define
    `_update(p, g, state)`, which changes the array `p` in place from its gradient `g`.

    `hyperparams` names the attributes that state_dict() saves besides the per-parameter state.
    """

    hyperparams = ("lr",)

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        first = {}  # id -> index: a parameter listed twice would be updated twice per step
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"parameter {i} must be a Tensor with requires_grad=True, got {type(p).__name__}"
                                + (" with requires_grad=False" if isinstance(p, Tensor) else ""))
            if first.setdefault(id(p), i) != i:
                raise ValueError(f"parameter {i} is parameter {first[id(p)]} again: list each parameter once")
        self.lr = _finite("lr", lr)
        self.state = [{} for _ in self.params]

    def zero_grad(self):
        """Forget the gradients (set .grad = None, PyTorch's default set_to_none=True)."""
        for p in self.params:
            p.grad = None

    @no_grad()
    def step(self):
        """Apply one update to every parameter that has a gradient."""
        for i, (p, state) in enumerate(zip(self.params, self.state)):
            if p.grad is None:
                continue
            if p.grad.shape != p.shape:
                raise ValueError(f"parameter {i} has shape {p.shape} but its gradient has shape {p.grad.shape}")
            self._update(p.data, p.grad.data, state)

    def _update(self, p, g, state):
        raise NotImplementedError(f"{type(self).__name__} has no _update")

    def state_dict(self):
        """{'hyperparams': {name: value}, 'state': [one {name: np.ndarray} per parameter]}, copied.

        Step counts are 0-d int64 arrays (PyTorch keeps them as tensors too), so every piece of
        state is an array and a checkpoint can store it as is.
        """
        return {"hyperparams": {name: getattr(self, name) for name in self.hyperparams},
                "state": [{k: v.copy() for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, state_dict):
        """Restore what state_dict() returned, for an optimizer over parameters of the same shapes."""
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ValueError(f"state dict has state for {len(states)} parameters, "
                             f"this optimizer has {len(self.params)}")
        for i, (p, s) in enumerate(zip(self.params, states)):
            for k, v in s.items():
                if v.ndim and v.shape != p.shape:
                    raise ValueError(f"state {k!r} of parameter {i} has shape {v.shape}, the parameter {p.shape}")
        for name, value in state_dict["hyperparams"].items():
            if name not in self.hyperparams:
                raise ValueError(f"state dict has hyperparameter {name!r}, which {type(self).__name__} does not use")
            setattr(self, name, tuple(value) if isinstance(value, list) else value)
        self.state = [{k: np.array(v) for k, v in s.items()} for s in states]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay (torch.optim.SGD):

        g = grad + weight_decay * p
        buf = g (first step), then buf = momentum * buf + g
        p = p - lr * buf          (p - lr * g without momentum)
    """

    hyperparams = ("lr", "momentum", "weight_decay")

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = _finite("momentum", momentum), _finite("weight_decay", weight_decay)

    def _update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.copy()
            else:
                buf = state["momentum_buffer"]
                buf *= self.momentum
                buf += g
            g = state["momentum_buffer"]
        p -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), as torch.optim.Adam; weight_decay is L2, added to the gradient.

        m = beta1 * m + (1 - beta1) * g               running mean of the gradient
        v = beta2 * v + (1 - beta2) * g * g           running mean of its square
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    m and v start at zero, so early on they are biased towards zero; dividing by 1 - beta^t
    (t = the number of updates so far) undoes that bias.
    """

    hyperparams = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.betas = tuple(betas)
        self.eps, self.weight_decay = _finite("eps", eps), _finite("weight_decay", weight_decay)

    def _update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        self._adam(p, g, state)

    def _adam(self, p, g, state):
        """The Adam step proper, shared with AdamW."""
        if not state:
            state.update(step=np.zeros((), np.int64), exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
        state["step"] += 1
        t = int(state["step"])
        beta1, beta2 = self.betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (g - m)  # torch's lerp_(g, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * g * g
        step_size = self.lr / (1 - beta1 ** t)
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + self.eps
        p -= step_size * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:
    p = p * (1 - lr * weight_decay) first, then the Adam step on the plain gradient, so the
    decay is not rescaled by Adam's per-coordinate step size as L2 in the gradient would be.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)

    def _update(self, p, g, state):
        p *= 1 - self.lr * self.weight_decay
        self._adam(p, g, state)


def clip_grad_norm_(parameters, max_norm):
    """Scale all gradients together so that their global L2 norm is at most max_norm.

    As torch.nn.utils.clip_grad_norm_: the norm is taken over every gradient as if they were
    one vector; gradients are multiplied in place by min(1, max_norm / (norm + 1e-6)).
    Parameters without a gradient are skipped. Returns the norm before clipping, a float.
    max_norm=inf measures the norm without clipping, as in PyTorch.
    """
    if max_norm != math.inf:
        _finite("max_norm", max_norm, positive=True)
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad.data for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total_norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    coef = min(1.0, max_norm / (total_norm + 1e-6))
    for g in grads:
        g *= coef
    return total_norm


def warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    """The learning rate for update number `step` (0-based): linear warm-up, then cosine decay.

    Steps 0 .. warmup_steps-1 rise linearly to base_lr (base_lr * (step + 1) / warmup_steps);
    from warmup_steps to total_steps the rate falls along half a cosine from base_lr to
    min_lr_ratio * base_lr, and stays there after total_steps. A pure function of the step,
    like nanoGPT's get_lr, so a resumed run needs no scheduler state.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got warmup_steps={warmup_steps}, "
                         f"total_steps={total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    min_lr = min_lr_ratio * base_lr
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # in [0, 1)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
