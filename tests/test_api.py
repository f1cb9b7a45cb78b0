"""The API as a PyTorch user guesses it (issue 17): .grad is a Tensor, Module.double()/.float()/.to(),
train()/eval(), help(Tensor.__init__), __version__."""

import re
from pathlib import Path

import numpy as np
import pytest

import tinygrad_attn as tg
from tinygrad_attn import Tensor, gradcheck, nn, optim


def leaf(values):
    return Tensor(values, requires_grad=True, dtype=tg.float64)


# ---------------------------------------------------------------------------------------
# .grad is a Tensor without a graph
# ---------------------------------------------------------------------------------------

def test_grad_is_a_tensor_without_a_graph():
    x = leaf([3.0, 4.0])
    (x * x).sum().backward()
    g = x.grad
    assert isinstance(g, Tensor) and g.shape == (2,) and g.dtype == tg.float64
    assert not g.requires_grad and g.grad_fn is None and g.is_leaf
    assert g.norm().item() == 10.0  # |(6, 8)|
    assert isinstance(g.numpy(), np.ndarray) and g.tolist() == [6.0, 8.0]
    assert (g * 0.5 + 1.0).tolist() == [4.0, 5.0] and not (g * 0.5).requires_grad  # arithmetic, no graph
    np.testing.assert_array_equal(np.asarray(g), [6.0, 8.0])  # numpy and np.testing take it
    assert g.zero_() is g and g.tolist() == [0.0, 0.0]


def test_gradients_accumulate_into_the_same_tensor():
    x = leaf([1.0, 2.0])
    (x * 2.0).sum().backward()
    first = x.grad
    (x * 3.0).sum().backward()
    assert x.grad is first and first.tolist() == [5.0, 5.0]  # added in place, as PyTorch's AccumulateGrad
    x.grad.zero_()
    (x * 1.0).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_retained_grad_of_a_non_leaf_is_a_tensor():
    x = leaf([1.0, 2.0])
    h = (x * 3.0).retain_grad()
    (h * h).sum().backward()
    assert isinstance(h.grad, Tensor) and h.grad.tolist() == [6.0, 12.0]


def test_gradient_methods_a_pytorch_user_calls():
    x = leaf([[-3.0, 0.0], [4.0, 1.0]])
    np.testing.assert_array_equal(x.abs().data, [[3.0, 0.0], [4.0, 1.0]])
    assert x.norm().item() == pytest.approx(26 ** 0.5)
    np.testing.assert_allclose(x.norm(dim=1, keepdim=True).data, [[3.0], [17 ** 0.5]])
    assert gradcheck(lambda t: t.abs(), [leaf([-2.0, 0.5, 3.0])])
    assert gradcheck(lambda t: t.norm(dim=-1), [leaf([[1.0, -2.0], [0.5, 3.0]])])
    assert f"{x.norm():.3f}" == "5.099" and f"{x}" == str(x)  # format specs for a 0-d tensor, as in PyTorch
    with pytest.raises(TypeError, match="norm needs a floating-point tensor"):
        Tensor([3, 4]).norm()


def test_optimizers_and_clipping_read_tensor_gradients():
    p = nn.Parameter(np.array([3.0, 4.0]))
    (p * p).sum().backward()  # grad (6, 8), norm 10
    assert optim.clip_grad_norm_([p], 5.0) == pytest.approx(10.0)
    np.testing.assert_allclose(p.grad, [3.0, 4.0], rtol=1e-6)
    optim.SGD([p], lr=1.0).step()
    np.testing.assert_allclose(p.data, [0.0, 0.0], atol=1e-5)


# ---------------------------------------------------------------------------------------
# Module: dtypes and modes
# ---------------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self):
        self.lin = nn.Linear(3, 2)
        self.ln = nn.LayerNorm(2)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("scale", Tensor([2.0, 0.5]))
        self.register_buffer("keep", Tensor(np.array([True, False])))

    def forward(self, x):
        return self.drop(self.ln(self.lin(x))) * self.scale


def test_double_and_float_cast_parameters_buffers_and_gradients_in_place():
    m = Block()
    weight = m.lin.weight
    m(Tensor(np.ones((1, 3)))).sum().backward()
    assert m.double() is m
    assert all(p.dtype == tg.float64 for p in m.parameters()) and m.scale.dtype == tg.float64
    assert m.lin.weight is weight and weight.grad.dtype == tg.float64  # the same Parameter objects, as PyTorch
    assert m.keep.dtype == tg.bool_  # a bool buffer is not floating: left alone
    assert m.to(tg.float32) is m and all(p.dtype == tg.float32 for p in m.parameters())
    assert m.to("float64").float().scale.dtype == tg.float32
    with pytest.raises(TypeError, match="Module.to needs a floating dtype, got int64"):
        m.to(tg.int64)


def test_a_whole_model_in_float64_passes_gradcheck():
    tg.manual_seed(0)
    m = Block().double().eval()
    x = leaf(np.random.default_rng(0).standard_normal((2, 3)))
    assert gradcheck(lambda x, *params: m(x), [x] + m.parameters())


def test_train_false_and_eval_set_every_submodule():
    m = Block()
    assert m.train(False) is m and not any(sub.training for sub in m.modules())
    x = Tensor(np.ones((4, 3)))
    np.testing.assert_array_equal(m(x).data, m(x).data)  # dropout off: deterministic
    assert m.train() is m and all(sub.training for sub in m.modules())
    assert m.eval() is m and not m.drop.training
    with pytest.raises(ValueError, match="train\\(mode\\) needs True or False, got 'no'"):
        m.train("no")


# ---------------------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------------------

def test_tensor_init_has_a_docstring():
    doc = Tensor.__init__.__doc__
    assert doc and "copy" in doc and "float32" in doc and "requires_grad" in doc


def test_version_agrees_with_pyproject():
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == tg.__version__
