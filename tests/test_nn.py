"""nn.Module (names, modes, state_dict, hooks) and the basic layers, against the PyTorch conventions."""

import math

import numpy as np
import pytest

from tinygrad_attn import Tensor, gradcheck, manual_seed, nn
from tinygrad_attn.nn import functional as F
from tinygrad_attn.nn.module import IncompatibleKeys


class Block(nn.Module):
    """A pre-norm MLP block: the nesting the transformer uses."""

    def __init__(self, d):
        self.ln = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.Dropout(0.5))

    def forward(self, x):
        return x + self.ff(self.ln(x))


class TinyLM(nn.Module):
    """Embedding -> ModuleList of blocks -> LayerNorm -> Linear head, with two buffers."""

    def __init__(self, vocab=7, d=4, n_blocks=2):
        self.tok_emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d) for _ in range(n_blocks)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.register_buffer("pos_scale", np.arange(d, dtype=np.float32))
        self.register_buffer("mask", np.tril(np.ones((3, 3), dtype=bool)), persistent=False)

    def forward(self, ids):
        x = self.tok_emb(ids) * Tensor(self.pos_scale.data)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


PARAM_NAMES = ["tok_emb.weight"] + [
    f"blocks.{i}.{name}" for i in range(2)
    for name in ("ln.weight", "ln.bias", "ff.0.weight", "ff.0.bias", "ff.2.weight", "ff.2.bias")
] + ["ln_f.weight", "ln_f.bias", "head.weight"]


def randn(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.fixture
def hook_handles():
    """Collects the handles of global hooks and removes them even when the test fails."""
    handles = []
    yield handles
    for h in handles:
        h.remove()


# ---------------------------------------------------------------------------------------
# Walking the tree
# ---------------------------------------------------------------------------------------

def test_named_parameters_dotted_names_in_assignment_order():
    model = TinyLM()
    assert [name for name, _ in model.named_parameters()] == PARAM_NAMES
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for _, p in model.named_parameters())
    assert model.blocks[1].ff[2].weight is dict(model.named_parameters())["blocks.1.ff.2.weight"]
    # parameters() is the same list, without the names
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in model.named_parameters()]
    # own parameters come before the children's, as in PyTorch
    assert [n for n, _ in model.blocks[0].named_parameters(prefix="b")][:2] == ["b.ln.weight", "b.ln.bias"]
    assert model.parameters(recurse=False) == []  # TinyLM holds no parameter itself
    assert [n for n, _ in model.head.named_parameters(recurse=False)] == ["weight"]


def test_shared_parameter_listed_once_but_saved_under_both_names():
    model = TinyLM()
    model.head.weight = model.tok_emb.weight  # weight tying, as GPT-2: both (vocab, d)
    names = [name for name, _ in model.named_parameters()]
    assert names.count("tok_emb.weight") == 1 and "head.weight" not in names
    assert len(model.parameters()) == len(PARAM_NAMES) - 1
    # state_dict keeps both keys, as torch does, so a tied PyTorch checkpoint loads strictly
    sd = model.state_dict()
    assert "tok_emb.weight" in sd and "head.weight" in sd
    new = np.full_like(sd["tok_emb.weight"], 0.25)
    sd["tok_emb.weight"], sd["head.weight"] = new, new
    model.load_state_dict(sd)
    assert model.head.weight is model.tok_emb.weight
    np.testing.assert_array_equal(model.head.weight.data, new)


def test_named_modules_and_children():
    model = TinyLM(n_blocks=1)
    assert [name for name, _ in model.named_modules()] == [
        "", "tok_emb", "blocks", "blocks.0", "blocks.0.ln", "blocks.0.ff", "blocks.0.ff.0", "blocks.0.ff.1",
        "blocks.0.ff.2", "blocks.0.ff.3", "ln_f", "head"]
    modules = dict(model.named_modules())
    assert modules[""] is model and modules["blocks.0.ff.1"] is model.blocks[0].ff[1]
    assert [type(m).__name__ for m in model.modules()][:3] == ["TinyLM", "Embedding", "ModuleList"]
    assert list(model.children()) == [model.tok_emb, model.blocks, model.ln_f, model.head]
    assert [name for name, _ in model.named_children()] == ["tok_emb", "blocks", "ln_f", "head"]


def test_train_and_eval_propagate_to_every_submodule():
    model = TinyLM()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.blocks[0].train()  # only that subtree
    assert model.blocks[0].ff[3].training and not model.blocks[1].ff[3].training and not model.training
    assert model.train() is model
    assert all(m.training for m in model.modules())


def test_eval_turns_dropout_inside_a_sequential_off():
    manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    x = Tensor(randn(4, 8, dtype=np.float32))
    train_out = model(x).data
    assert (train_out == 0).sum() > 0
    model.eval()
    np.testing.assert_array_equal(model(x).data, model[0](x).data)


def test_zero_grad_clears_every_gradient():
    model = TinyLM()
    model(np.array([[1, 2, 3]])).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------------------
# Buffers and state_dict
# ---------------------------------------------------------------------------------------

def test_register_buffer_persistent_or_not():
    model = TinyLM()
    assert isinstance(model.mask, Tensor) and not model.mask.requires_grad
    assert [n for n, _ in model.named_buffers()] == ["pos_scale", "mask"]
    assert [n for n, _ in model.named_buffers(persistent_only=True)] == ["pos_scale"]
    sd = model.state_dict()
    assert "pos_scale" in sd and "mask" not in sd
    assert [k for k in sd if k != "pos_scale"] == PARAM_NAMES
    assert all(name not in [n for n, _ in model.named_parameters()] for name in ("pos_scale", "mask"))


def test_state_dict_returns_copies():
    model = TinyLM()
    sd = model.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    before = model.head.weight.data.copy()
    sd["head.weight"][...] = 123.0
    sd["pos_scale"][...] = -1.0
    np.testing.assert_array_equal(model.head.weight.data, before)
    np.testing.assert_array_equal(model.pos_scale.data, np.arange(4))


def test_load_state_dict_round_trip():
    manual_seed(1)
    src = TinyLM()
    manual_seed(2)
    dst = TinyLM()
    ids = np.array([[0, 3, 6], [2, 2, 5]])
    src.eval()
    dst.eval()
    assert not np.allclose(src(ids).data, dst(ids).data)
    sd = src.state_dict()
    sd["pos_scale"] = sd["pos_scale"] + 1  # buffers load too
    result = dst.load_state_dict(sd)
    assert result == IncompatibleKeys([], [])
    np.testing.assert_array_equal(dst.pos_scale.data, np.arange(4) + 1)
    src.pos_scale.data = src.pos_scale.data + 1
    np.testing.assert_array_equal(dst(ids).data, src(ids).data)
    # the loaded arrays are copies, and keep the module's dtype
    sd["head.weight"][...] = 0
    assert not np.all(dst.head.weight.data == 0)
    dst.load_state_dict({k: v.astype(np.float64) for k, v in src.state_dict().items()})
    assert dst.head.weight.dtype == np.float32
    # Tensors are accepted as values
    dst.load_state_dict({k: Tensor(v) for k, v in src.state_dict().items()})
    np.testing.assert_array_equal(dst.head.weight.data, src.head.weight.data)


def test_load_state_dict_strict_lists_every_problem_in_one_error():
    model = TinyLM()
    sd = model.state_dict()
    del sd["ln_f.bias"]
    sd["extra.weight"] = np.zeros(3)
    sd["head.weight"] = np.zeros((3, 4))
    before = model.ln_f.weight.data.copy()
    with pytest.raises(ValueError, match="missing keys: ln_f.bias") as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert "unexpected keys: extra.weight" in msg
    assert "shape mismatch: head.weight: expected (7, 4), got (3, 4)" in msg
    np.testing.assert_array_equal(model.ln_f.weight.data, before)  # nothing half-loaded


def test_load_state_dict_non_strict_returns_incompatible_keys():
    model = TinyLM()
    sd = model.state_dict()
    del sd["ln_f.bias"]
    sd["extra.weight"] = np.zeros(3)
    sd["ln_f.weight"] = np.full(4, 3.0)
    result = model.load_state_dict(sd, strict=False)
    assert isinstance(result, IncompatibleKeys)
    assert result.missing_keys == ["ln_f.bias"] and result.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(model.ln_f.weight.data, np.full(4, 3.0))
    # a shape mismatch is an error even when not strict, as in PyTorch
    sd["ln_f.weight"] = np.ones(5)
    with pytest.raises(ValueError, match=r"ln_f.weight: expected \(4,\), got \(5,\)"):
        model.load_state_dict(sd, strict=False)


def test_load_state_dict_from_pytorch_twin_gives_same_outputs():
    torch = pytest.importorskip("torch")

    class TorchTwin(torch.nn.Module):
        def __init__(self, vocab=7, d=4):
            super().__init__()
            self.tok_emb = torch.nn.Embedding(vocab, d)
            self.ln = torch.nn.LayerNorm(d)
            self.ff = torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.GELU(approximate="tanh"),
                                          torch.nn.Linear(8, d))
            self.head = torch.nn.Linear(d, vocab, bias=False)
            self.head.weight = self.tok_emb.weight  # tied: two keys in its state_dict

        def forward(self, ids):
            x = self.tok_emb(ids)
            return self.head(x + self.ff(self.ln(x)))

    class Twin(nn.Module):
        def __init__(self, vocab=7, d=4):
            self.tok_emb = nn.Embedding(vocab, d)
            self.ln = nn.LayerNorm(d)
            self.ff = nn.Sequential(nn.Linear(d, 8), nn.GELU(), nn.Linear(8, d))
            self.head = nn.Linear(d, vocab, bias=False)
            self.head.weight = self.tok_emb.weight

        def forward(self, ids):
            x = self.tok_emb(ids)
            return self.head(x + self.ff(self.ln(x)))

    torch.manual_seed(0)
    theirs = TorchTwin()
    with torch.no_grad():  # make LayerNorm's affine part non-trivial
        theirs.ln.weight.uniform_(0.5, 1.5)
        theirs.ln.bias.uniform_(-0.5, 0.5)
    ours = Twin()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.load_state_dict(theirs.state_dict()) == IncompatibleKeys([], [])
    ids = np.array([[0, 3, 6, 3], [1, 2, 2, 5]])
    expected = theirs(torch.from_numpy(ids)).detach().numpy()
    np.testing.assert_allclose(ours(ids).data, expected, rtol=1e-5, atol=1e-6)
    # and back: our state_dict loads into the torch module
    for p in ours.parameters():
        p.data = p.data * 0.5
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    expected = theirs(torch.from_numpy(ids)).detach().numpy()
    np.testing.assert_allclose(ours(ids).data, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Global forward hooks
# ---------------------------------------------------------------------------------------

def test_global_forward_hooks_fire_for_nested_modules_in_order(hook_handles):
    model = Block(4)
    calls, outputs = [], {}
    hook_handles.append(nn.register_module_forward_pre_hook(
        lambda m, args: calls.append(("pre", type(m).__name__, args[0].shape))))

    def post(m, args, out):
        calls.append(("post", type(m).__name__, out.shape))
        outputs[id(m)] = out

    hook_handles.append(nn.register_module_forward_hook(post))
    x = Tensor(randn(2, 4, dtype=np.float32))
    out = model(x)
    assert calls == [
        ("pre", "Block", (2, 4)), ("pre", "LayerNorm", (2, 4)), ("post", "LayerNorm", (2, 4)),
        ("pre", "Sequential", (2, 4)),
        ("pre", "Linear", (2, 4)), ("post", "Linear", (2, 8)),
        ("pre", "GELU", (2, 8)), ("post", "GELU", (2, 8)),
        ("pre", "Linear", (2, 8)), ("post", "Linear", (2, 4)),
        ("pre", "Dropout", (2, 4)), ("post", "Dropout", (2, 4)),
        ("post", "Sequential", (2, 4)), ("post", "Block", (2, 4))]
    assert outputs[id(model)] is out  # the hook sees the very tensor returned
    for h in hook_handles:
        h.remove()
    calls.clear()
    model(x)
    assert calls == []


def test_removing_one_hook_keeps_the_others(hook_handles):
    seen_a, seen_b = [], []
    hook_handles.append(nn.register_module_forward_hook(lambda m, a, o: seen_a.append(type(m).__name__)))
    hook_handles.append(nn.register_module_forward_hook(lambda m, a, o: seen_b.append(type(m).__name__)))
    hook_handles[0].remove()
    nn.ReLU()(Tensor([1.0, -1.0]))
    assert seen_a == [] and seen_b == ["ReLU"]


# ---------------------------------------------------------------------------------------
# repr
# ---------------------------------------------------------------------------------------

def test_repr_nests_like_pytorch():
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Dropout(0.1),
                          nn.ModuleList([nn.LayerNorm(4), nn.Embedding(5, 4)]))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (1): GELU()\n"
        "  (2): Dropout(p=0.1)\n"
        "  (3): ModuleList(\n"
        "    (0): LayerNorm((4,), eps=1e-05)\n"
        "    (1): Embedding(5, 4)\n"
        "  )\n"
        ")")
    assert repr(nn.Linear(2, 1, bias=False)) == "Linear(in_features=2, out_features=1, bias=False)"
    assert repr(model[0].bias).startswith("Parameter containing:\ntensor(")


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------

def test_linear_shapes_and_init_bounds():
    manual_seed(0)
    lin = nn.Linear(100, 30)
    bound = 1 / math.sqrt(100)
    assert lin.weight.shape == (30, 100) and lin.bias.shape == (30,)
    assert lin.weight.dtype == np.float32 and lin.weight.requires_grad
    for p in (lin.weight, lin.bias):
        assert np.all(np.abs(p.data) <= bound)
    # uniform over the whole range, not a narrower one
    assert np.abs(lin.weight.data).max() > 0.95 * bound
    assert abs(lin.weight.data.std() - bound / math.sqrt(3)) < 0.05 * bound
    x = randn(5, 100, dtype=np.float32)
    np.testing.assert_allclose(lin(Tensor(x)).data, x @ lin.weight.data.T + lin.bias.data, rtol=1e-5, atol=1e-6)


def test_linear_without_bias():
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert list(lin.state_dict()) == ["weight"]
    x = randn(4, 3, dtype=np.float32)
    np.testing.assert_allclose(lin(Tensor(x)).data, x @ lin.weight.data.T, rtol=1e-6)


def test_linear_wrong_input_width():
    lin = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"Linear\(4, 3\) got input of shape \(2, 5\).*must be 4"):
        lin(Tensor(np.zeros((2, 5))))


@pytest.mark.parametrize("x_shape", [(3, 4), (2, 3, 4)], ids=["2d", "3d"])
def test_linear_gradcheck(x_shape):
    lin = nn.Linear(4, 3).double()
    x = Tensor(randn(*x_shape), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda x, w, b: lin(x), [x, lin.weight, lin.bias])


def test_embedding_lookup_and_gradient_accumulates_for_repeated_ids():
    emb = nn.Embedding(6, 3)
    assert emb.weight.shape == (6, 3)
    ids = np.array([[1, 1, 4], [0, 1, 5]])
    out = emb(Tensor(ids))
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out.data, emb.weight.data[ids])
    np.testing.assert_array_equal(emb(ids.tolist()).data, out.data)  # numpy arrays and lists too
    u = randn(2, 3, 3, dtype=np.float32)
    out.backward(gradient=u)
    expected = np.zeros((6, 3), dtype=np.float32)
    np.add.at(expected, ids, u)
    np.testing.assert_allclose(emb.weight.grad, expected, rtol=1e-6)
    np.testing.assert_allclose(emb.weight.grad[1], u[0, 0] + u[0, 1] + u[1, 1], rtol=1e-6)  # three uses
    assert np.all(emb.weight.grad[[2, 3]] == 0)


def test_embedding_init_is_standard_normal():
    manual_seed(0)
    w = nn.Embedding(1000, 16).weight.data
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02


def test_embedding_gradcheck():
    emb = nn.Embedding(5, 3).double()
    ids = np.array([[0, 2, 2], [4, 2, 0]])
    assert gradcheck(lambda w: emb(ids), [emb.weight])


def test_embedding_rejects_float_and_out_of_range_ids():
    emb = nn.Embedding(10, 2)
    with pytest.raises(TypeError, match="integer ids, got dtype float"):
        emb(Tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"id 10 is out of range \[0, 9\]"):
        emb(np.array([3, 10]))
    with pytest.raises(ValueError, match=r"id -1 is out of range \[0, 9\]"):
        emb(np.array([[-1, 3]]))


def test_layernorm_forward():
    x = randn(2, 3, 5, dtype=np.float32) * 3 + 1
    ln = nn.LayerNorm(5)
    assert ln.weight.shape == ln.bias.shape == (5,)
    np.testing.assert_array_equal(ln.weight.data, 1)
    np.testing.assert_array_equal(ln.bias.data, 0)
    out = ln(Tensor(x)).data
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-6)
    np.testing.assert_allclose(out.var(-1), 1, atol=1e-4)  # biased variance, up to eps
    ln.weight.data = randn(5, seed=1, dtype=np.float32)
    ln.bias.data = randn(5, seed=2, dtype=np.float32)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mu) / np.sqrt(var + 1e-5) * ln.weight.data + ln.bias.data
    np.testing.assert_allclose(ln(Tensor(x)).data, expected, rtol=1e-5, atol=1e-5)


def test_layernorm_options():
    ln2 = nn.LayerNorm((3, 4))  # normalise over the last two dims together
    x = randn(2, 3, 4, dtype=np.float32)
    out = ln2(Tensor(x)).data
    np.testing.assert_allclose(out.reshape(2, -1).mean(-1), 0, atol=1e-6)
    assert ln2.weight.shape == (3, 4)
    plain = nn.LayerNorm(4, elementwise_affine=False)
    assert plain.parameters() == [] and plain.weight is None and plain.bias is None
    assert [n for n, _ in nn.LayerNorm(4, bias=False).named_parameters()] == ["weight"]


def test_layernorm_gradcheck_weight_bias_input():
    ln = nn.LayerNorm(5).double()
    ln.weight.data = randn(5, seed=1)
    ln.bias.data = randn(5, seed=2)
    x = Tensor(randn(2, 3, 5), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda x, w, b: ln(x), [x, ln.weight, ln.bias])


def test_dropout_train_vs_eval():
    manual_seed(0)
    drop = nn.Dropout(0.3)
    x = np.ones((200, 50), dtype=np.float32)
    out = drop(Tensor(x)).data
    dropped = out == 0
    assert abs(dropped.mean() - 0.3) < 0.02
    np.testing.assert_allclose(out[~dropped], 1 / 0.7, rtol=1e-6)  # survivors scaled up
    assert abs(out.mean() - 1) < 0.05  # expectation kept
    drop.eval()
    np.testing.assert_array_equal(drop(Tensor(x)).data, x)
    np.testing.assert_array_equal(nn.Dropout(0.0)(Tensor(x)).data, x)
    assert np.all(nn.Dropout(1.0)(Tensor(x)).data == 0)


def test_dropout_gradient_uses_the_same_mask():
    manual_seed(3)
    x = Tensor(np.ones((4, 6)), requires_grad=True)
    out = nn.Dropout(0.5)(x)
    out.backward(gradient=np.full((4, 6), 2.0))
    np.testing.assert_allclose(x.grad, 2 * out.data)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_rejects_bad_probability(p):
    with pytest.raises(ValueError, match=f"got {p}"):
        nn.Dropout(p)
    with pytest.raises(ValueError, match=f"got {p}"):
        F.dropout(Tensor([1.0]), p)


def test_gelu_tanh_form():
    x = np.linspace(-5, 5, 41)
    expected = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(nn.GELU()(Tensor(x, dtype=np.float64)).data, expected, rtol=1e-12)
    assert gradcheck(nn.GELU(), [Tensor(x, requires_grad=True, dtype=np.float64)])
    with pytest.raises(ValueError, match="'none'"):
        nn.GELU(approximate="none")


def test_gelu_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = randn(50, dtype=np.float32) * 3
    expected = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    np.testing.assert_allclose(nn.GELU()(Tensor(x)).data, expected, rtol=1e-5, atol=1e-6)


def test_sequential_applies_in_order_and_indexes_like_a_list():
    seq = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    x = Tensor(randn(4, 3, dtype=np.float32))
    np.testing.assert_array_equal(seq(x).data, seq[2](seq[1](seq[0](x))).data)
    assert len(seq) == 3 and seq[-1] is seq[2] and list(seq) == [seq[0], seq[1], seq[2]]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(IndexError, match="index 3 is out of range for a ModuleList of length 3"):
        seq[3]
    with pytest.raises(IndexError):
        seq[-4]


def test_module_list_append_and_forward_is_not_defined():
    ml = nn.ModuleList()
    assert len(ml) == 0
    ml.append(nn.Linear(2, 2)).append(nn.ReLU())
    assert len(ml) == 2 and [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias"]
    with pytest.raises(NotImplementedError, match="ModuleList does not define forward"):
        ml(Tensor([1.0, 2.0]))
