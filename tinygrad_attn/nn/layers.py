"""The basic layers, with PyTorch's names, shapes and default initialisation."""

import math

import numpy as np

from .. import fused
from ..engine import Tensor, default_rng
from ..runtime import fused_ops_enabled
from . import functional as F
from .module import Module, Parameter


def _uniform(shape, bound):
    return Parameter(default_rng().uniform(-bound, bound, size=shape))


class Linear(Module):
    """y = x @ weight.T + bias. weight (out_features, in_features); x (..., in_features).

    Init as PyTorch: weight and bias uniform in +-1/sqrt(in_features).
    """

    def __init__(self, in_features, out_features, bias=True):
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight = _uniform((out_features, in_features), bound)
        self.bias = _uniform((out_features,), bound) if bias else None

    def forward(self, x):
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got input of shape {x.shape}: "
                             f"its last dim must be {self.in_features}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: integer ids (...) -> weight[ids] (..., embedding_dim). Init N(0, 1)."""

    def __init__(self, num_embeddings, embedding_dim):
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(default_rng().standard_normal((num_embeddings, embedding_dim)))

    def forward(self, idx):
        ids = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"Embedding needs integer ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            bad = ids.max() if ids.max() >= self.num_embeddings else ids.min()
            raise ValueError(f"Embedding({self.num_embeddings}, {self.embedding_dim}): id {bad} is out of range "
                             f"[0, {self.num_embeddings - 1}]")
        if fused_ops_enabled():  # repeated ids accumulate their gradients, either way
            return fused.Embedding.apply(self.weight, ids=ids)  # (..., embedding_dim)
        return self.weight[ids]

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise the last dims to mean 0, variance 1 (biased), then scale and shift. Init 1 and 0."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = Parameter(np.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    """Inverted dropout in training mode, the identity in eval mode."""

    def __init__(self, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class GELU(Module):
    """GELU, tanh approximation (GPT-2's). Unlike torch.nn.GELU, 'tanh' is the default and the only form."""

    def __init__(self, approximate="tanh"):
        if approximate != "tanh":
            raise ValueError(f"only approximate='tanh' GELU is implemented, got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)


class ReLU(Module):
    def forward(self, x):
        return x.relu()
