"""Fixtures shared by the whole test suite; keep them generic. And the end of the report: skips
counted by reason, one line each, and how to run the PyTorch parity tests when they were skipped."""

import collections
import sys

import numpy as np
import pytest

from tinygrad_attn.tensor import topological_order


@pytest.fixture(scope="session")
def torch():
    """PyTorch, for parity tests; the test is skipped cleanly where it is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    """A numpy generator with a fixed seed, fresh for every test (test data, not model randomness)."""
    return np.random.default_rng(1234)


@pytest.fixture
def sample(rng):
    """sample(shape, kind="n"): float64 test data from `rng`, of the kind an op needs to be smooth at
    every element. n: normal; p: positive (log, sqrt, fractional powers); a: away from 0, both signs
    (relu's kink, division); d: distinct and well apart (max without ties); t: small integers (ties)."""
    def draw(shape, kind="n"):
        if kind == "n":
            return rng.standard_normal(shape)
        if kind == "p":
            return rng.uniform(0.5, 2.0, shape)
        if kind == "a":
            return rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
        if kind == "d":
            return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 1.0
        if kind == "t":
            return rng.integers(0, 3, shape).astype(np.float64)
        raise ValueError(f"unknown kind of test data {kind!r}")
    return draw


@pytest.fixture
def check_graph_dtype():
    """check(out, dtype=None): every gradient a node's backward returns has the dtype of the input it
    is for (stricter than leaf .grad, which the engine casts), and with `dtype`, every tensor in out's
    graph has that dtype (no float32 -> float64 drift)."""
    def check(out, dtype=None):
        for t in topological_order(out):
            name = type(t.grad_fn).__name__
            assert dtype is None or t.dtype == dtype, f"{name} output is {t.dtype}, expected {dtype}"
            if t.grad_fn is not None:
                grads = t.grad_fn.backward(np.ones(t.shape, t.dtype))
                for p, g in zip(t.grad_fn.parents, grads):
                    if g is not None and p.requires_grad:
                        g = np.asarray(g)
                        assert g.dtype == p.dtype, f"{name}.backward gives {g.dtype} for an input of {p.dtype}"
    return check


def pytest_terminal_summary(terminalreporter):
    """One line per reason for the skipped tests (pyproject's addopts leaves them out of -r, which
    lists every skipping line), then, if PyTorch was missing, the command that installs it."""
    reasons = collections.Counter(report.longrepr[2].removeprefix("Skipped: ")
                                  for report in terminalreporter.stats.get("skipped", [])
                                  if isinstance(report.longrepr, tuple))
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"skipped {count}: {reason}")
    without_torch = sum(count for reason, count in reasons.items() if "'torch'" in reason)
    if without_torch:
        python = getattr(sys, "orig_argv", [""])[0] or sys.executable
        terminalreporter.write_line(f"the {without_torch} PyTorch parity tests need torch; to run them: "
                                    f"{python} -m pip install torch==2.13.0", yellow=True)
