"""nn.Module: a container of Parameters and sub-Modules, named the way PyTorch names them.

Parameters, buffers and sub-modules are found by walking the instance's attributes in the
order they were assigned, so `named_parameters()` yields "blocks.0.attn.W_query.weight"
exactly as PyTorch would, and `state_dict()` round-trips with a PyTorch twin.
"""

from collections import namedtuple

import numpy as np

from ..engine import Tensor


class Parameter(Tensor):
    """A Tensor that is a trainable weight of a Module: requires_grad=True by default."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        """As torch.nn.Parameter: a Tensor's data is shared, an array or a list is copied (as Tensor() does)."""
        super().__init__(data, requires_grad=requires_grad)
        if isinstance(data, Tensor):
            self.data = data.data

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


# Global hooks, as torch.nn.modules.module.register_module_forward_(pre_)hook: the drawing
# code uses them to learn which module call made which tensor. The engine never sees them.
_forward_pre_hooks, _forward_hooks = {}, {}


class RemovableHandle:
    _next_id = 0

    def __init__(self, hooks):
        self.hooks, self.id = hooks, RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self):
        self.hooks.pop(self.id, None)


def register_module_forward_pre_hook(hook):
    """hook(module, args) runs before every Module call."""
    handle = RemovableHandle(_forward_pre_hooks)
    _forward_pre_hooks[handle.id] = hook
    return handle


def register_module_forward_hook(hook):
    """hook(module, args, output) runs after every Module call."""
    handle = RemovableHandle(_forward_hooks)
    _forward_hooks[handle.id] = hook
    return handle


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer: subclasses set attributes in __init__ and define forward()."""

    training = True

    def __call__(self, *args, **kwargs):
        if not (_forward_pre_hooks or _forward_hooks):  # (the usual case, at 36 calls a decoded token)
            return self.forward(*args, **kwargs)
        for hook in tuple(_forward_pre_hooks.values()):
            hook(self, args)
        out = self.forward(*args, **kwargs)
        for hook in tuple(_forward_hooks.values()):
            hook(self, args, out)
        return out

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def register_buffer(self, name, tensor, persistent=True):
        """A tensor that belongs to the module but is not trained (e.g. a causal mask)."""
        self.__dict__.setdefault("_buffers", {})[name] = persistent
        setattr(self, name, tensor if isinstance(tensor, Tensor) else Tensor(tensor))

    # ----- walking the tree -----
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix=""):
        """This module and every sub-module, depth first, with dotted names ("" for self)."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) pairs; a parameter shared by two modules is listed once
        (under each of its names with remove_duplicate=False, as state_dict needs)."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and not (remove_duplicate and id(value) in seen):
                    seen.add(id(value))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def parameters(self, recurse=True):
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def named_buffers(self, prefix="", persistent_only=False):
        """(dotted name, Tensor) of every tensor registered with register_buffer."""
        for mod_prefix, module in self.named_modules(prefix):
            for name, persistent in vars(module).get("_buffers", {}).items():
                if persistent or not persistent_only:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), getattr(module, name)

    # ----- modes, gradients and dtypes -----
    def train(self, mode=True):
        """Training mode (dropout on) for this module and every sub-module, or eval mode if mode=False."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode) needs True or False, got {mode!r}")
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Cast every parameter (with its gradient) and floating buffer to a floating dtype, in place."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to needs a floating dtype, got {dtype} (as in PyTorch)")
        for t in [p for _, p in self.named_parameters()] + [b for _, b in self.named_buffers()]:
            if t.dtype.kind == "f":
                t.data = t.data.astype(dtype, copy=False)
                if t.grad is not None:
                    t.grad.data = t.grad.data.astype(dtype, copy=False)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # ----- saving and loading -----
    def state_dict(self):
        """{dotted name: numpy array} of every parameter and persistent buffer (copies)."""
        return {name: t.data.copy() for name, t in self._state_tensors()}

    def _state_tensors(self):
        yield from self.named_parameters(remove_duplicate=False)  # tied weights under both names, as torch
        yield from self.named_buffers(persistent_only=True)

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (numpy, Tensors, or anything np.asarray takes, e.g. CPU torch tensors) in.

        strict=True raises one ValueError listing missing, unexpected and mis-shaped keys.
        """
        own = dict(self._state_tensors())
        given = {k: np.asarray(v.data if isinstance(v, Tensor) else v) for k, v in state_dict.items()}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        misshaped = [f"{k}: expected {own[k].shape}, got {given[k].shape}"
                     for k in own if k in given and given[k].shape != own[k].shape]
        if misshaped or (strict and (missing or unexpected)):
            raise ValueError("load_state_dict failed: "
                             + "; ".join(f"{label}: {', '.join(keys)}" for label, keys in
                                         [("missing keys", missing), ("unexpected keys", unexpected),
                                          ("shape mismatch", misshaped)] if keys))
        cast = {k: given[k].astype(t.dtype) for k, t in own.items() if k in given}
        for k, t in own.items():  # a float mask of 0.5 must not quietly become True
            if k in cast and t.dtype.kind in "biu" and not np.array_equal(cast[k], given[k]):
                bad = np.unique(given[k][cast[k] != given[k]]).tolist()
                raise ValueError(f"load_state_dict: {k}: values {bad[:5]} do not convert to {t.dtype} exactly")
        for k, t in own.items():
            if k in cast:
                t.data = cast[k]
        return IncompatibleKeys(missing, unexpected)

    def __repr__(self):
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}({extra}\n" + "\n".join(lines) + "\n)"

    def extra_repr(self):
        return ""


class ModuleList(Module):
    """A list of modules, named "0", "1", ... as in PyTorch."""

    def __init__(self, modules=()):
        self._length = 0
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(self._length), module)
        self._length += 1
        return self

    def __getitem__(self, i):
        if not -self._length <= i < self._length:
            raise IndexError(f"index {i} is out of range for a ModuleList of length {self._length}")
        return getattr(self, str(i % self._length))

    def __len__(self):
        return self._length

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._length))


class Sequential(ModuleList):
    """Modules applied one after the other."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x
