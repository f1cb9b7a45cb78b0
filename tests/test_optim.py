"""Optimizers against torch.optim, gradient clipping against torch.nn.utils, the schedule's values."""

import math

import numpy as np
import pytest

from tinygrad_attn import Tensor
from tinygrad_attn.optim import SGD, Adam, AdamW, clip_grad_norm_, warmup_cosine

STEPS = 20


def make_problem(seed=0):
    """A random least-squares loss in a weight (4, 3) and a bias (3,): mean((X w + b - Y)^2)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((16, 4)).astype(np.float32)
    Y = rng.standard_normal((16, 3)).astype(np.float32)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    b0 = rng.standard_normal(3).astype(np.float32)
    return X, Y, w0, b0


def ours_loss(params, X, Y):
    w, b = params
    return ((Tensor(X) @ w + b - Tensor(Y)) ** 2).mean()


OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, betas=(0.85, 0.95), weight_decay=0.3)),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS)
def test_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    X, Y, w0, b0 = make_problem()
    ours = [Tensor(w0.copy(), requires_grad=True), Tensor(b0.copy(), requires_grad=True)]
    theirs = [torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)]
    opt = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name](ours, **kwargs)
    topt = getattr(torch.optim, name)(theirs, **kwargs)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    for _ in range(STEPS):
        opt.zero_grad()
        ours_loss(ours, X, Y).backward()
        opt.step()
        topt.zero_grad()
        ((Xt @ theirs[0] + theirs[1] - Yt) ** 2).mean().backward()
        topt.step()
    for p, tp in zip(ours, theirs):
        assert p.dtype == np.float32
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours[0].data, w0)  # it moved


@pytest.mark.parametrize("max_norm", [0.01, 1.0, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (3,), (2, 2, 2)]]
    ours = [Tensor(np.zeros(g.shape, np.float32), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for p, tp, g in zip(ours, theirs, grads):
        p.grad, tp.grad = Tensor(g), torch.tensor(g)
    norm = clip_grad_norm_(ours, max_norm)
    tnorm = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert norm == pytest.approx(tnorm.item(), rel=1e-6)
    assert norm == pytest.approx(math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads)))
    for p, tp in zip(ours, theirs):
        assert p.grad.dtype == np.float32
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-6)
    clipped = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in ours))
    assert clipped == pytest.approx(min(norm, max_norm), rel=1e-5)


def test_step_skips_parameters_without_gradient_and_zero_grad_clears():
    a = Tensor(np.ones(3, np.float32), requires_grad=True)
    b = Tensor(np.ones(2, np.float32), requires_grad=True)
    opt = Adam([a, b], lr=0.1)
    (a * Tensor(np.array([1.0, 2.0, 3.0]))).sum().backward()
    opt.step()
    assert np.all(a.data < 1) and np.array_equal(b.data, np.ones(2, np.float32))
    assert opt.state[1] == {} and int(opt.state[0]["step"]) == 1
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_rejects_bad_arguments():
    p = Tensor(np.ones(2, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="requires_grad=False"):
        SGD([Tensor(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="-1"):
        Adam([p], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_([p], 0.0)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_state_dict_round_trip_resumes_exactly(cls):
    X, Y, w0, b0 = make_problem(2)
    kwargs = dict(lr=0.05, momentum=0.9) if cls is SGD else dict(lr=0.05)

    def run(params, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            ours_loss(params, X, Y).backward()
            opt.step()

    params = [Tensor(w0.copy(), requires_grad=True), Tensor(b0.copy(), requires_grad=True)]
    opt = cls(params, **kwargs)
    run(params, opt, 5)
    saved_params = [p.data.copy() for p in params]
    saved = opt.state_dict()
    run(params, opt, 5)  # must not change `saved`: state_dict() copies

    resumed = [Tensor(a, requires_grad=True) for a in saved_params]
    opt2 = cls(resumed, lr=123.0)
    opt2.load_state_dict(saved)
    assert opt2.lr == 0.05
    run(resumed, opt2, 5)
    for p, q in zip(params, resumed):
        assert np.array_equal(p.data, q.data)


def test_load_state_dict_rejects_mismatched_shapes():
    p = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    opt = Adam([p])
    p.grad = Tensor(np.ones((2, 3), np.float32))
    opt.step()
    other = Adam([Tensor(np.ones((3, 2), np.float32), requires_grad=True)])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        other.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="2 parameters"):
        Adam([p]).load_state_dict({"hyperparams": {}, "state": [{}, {}]})


def test_warmup_cosine_values():
    lr = lambda s: warmup_cosine(s, 1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)  # noqa: E731
    assert lr(0) == pytest.approx(0.1)
    assert lr(4) == pytest.approx(0.5)
    assert lr(9) == pytest.approx(1.0)
    assert lr(10) == pytest.approx(1.0)
    assert lr(60) == pytest.approx(0.55)  # half-way down the cosine: min + (max - min) / 2
    assert lr(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr(110) == pytest.approx(0.1) and lr(500) == pytest.approx(0.1)
    assert all(lr(s) >= lr(s + 1) for s in range(10, 120))
    assert warmup_cosine(0, 3e-3, 0, 100) == pytest.approx(3e-3)
    with pytest.raises(ValueError, match="warmup_steps=20"):
        warmup_cosine(0, 1.0, 20, 10)
