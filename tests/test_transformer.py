"""The decoder-only transformer: configuration, the book's names, shapes, causality, padding,
gradients of the whole model, PyTorch parity, and generate()'s sampling and modes."""

import dataclasses
import json
import re

import numpy as np
import pytest

from tinygrad_attn import Tensor, manual_seed
from tinygrad_attn.nn import (GroupedQueryAttention, MultiHeadAttention, Transformer, TransformerConfig,
                              register_module_forward_hook)
from tinygrad_attn.nn.transformer import position_ids, sample_next_token

from attention_testing import gradcheck_module, kv_heads_of, left_padded, to_float64, torch_gpt_twin

VARIANTS = [("mha", None, "learned"), ("gqa", 2, "rope"), ("mqa", None, "learned"), ("mha", None, "rope")]


def tiny(attention="mha", num_kv_heads=None, positions="learned", **kw):
    manual_seed(0)
    cfg = TransformerConfig(**{**dict(vocab_size=7, context_length=8, d_model=8, num_layers=2, num_heads=4,
                                      num_kv_heads=kv_heads_of(attention, num_kv_heads), positions=positions), **kw})
    return to_float64(Transformer(cfg))


def ids(*shape, seed=0, high=7):
    return Tensor(np.random.default_rng(seed).integers(0, high, size=shape))


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

def test_config_fills_in_num_kv_heads_and_is_json_able():
    assert TransformerConfig(10, 8, num_heads=4).num_kv_heads == 4
    assert [TransformerConfig(10, 8, num_heads=4, num_kv_heads=kv).attention for kv in (4, 2, 1)] == ["mha", "gqa", "mqa"]
    cfg = TransformerConfig(10, 8, num_heads=4, num_kv_heads=2, positions="rope")
    assert TransformerConfig(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg
    local = TransformerConfig(10, 8, num_heads=4, window=3, layer_pattern="LLG")
    assert TransformerConfig(**json.loads(json.dumps(dataclasses.asdict(local)))) == local
    old_run = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("window", "layer_pattern", "kv_latent_dim")}
    assert TransformerConfig(**old_run) == cfg  # a run saved before these options loads unchanged


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=10, num_heads=4), r"d_model=10 is not divisible by num_heads=4"),
    (dict(num_kv_heads=3), r"num_kv_heads=3 does not divide num_heads=4"),
    (dict(num_kv_heads=0), r"num_kv_heads=0 does not divide num_heads=4"),
    (dict(num_kv_heads=8), r"num_kv_heads=8 does not divide num_heads=4"),
    (dict(positions="sinusoidal"), r"positions must be one of \('learned', 'rope'\), got 'sinusoidal'"),
    (dict(d_model=12, num_heads=4, positions="rope"),
     r"RoPE needs an even head_dim, got d_model=12 / num_heads=4 = 3"),
    (dict(dropout=1.0), r"dropout=1.0 must be in \[0, 1\)"),
    (dict(num_layers=0), r"num_layers=0 must be a positive integer"),
])
def test_config_errors_name_the_numbers(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(vocab_size=10, context_length=8, **kwargs)


# ---------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------

def test_book_names_and_attention_kinds():
    m = tiny("gqa", 2, "rope")
    assert m.blocks is m.trf_blocks and len(m.trf_blocks) == 2 and m.pos_emb is None
    block = m.trf_blocks[0]
    assert isinstance(block.att, GroupedQueryAttention) and block.att.num_kv_heads == 2 and block.att.rope is not None
    assert isinstance(tiny("mha").trf_blocks[1].att, MultiHeadAttention)
    assert tiny("mqa").trf_blocks[0].att.num_kv_heads == 1
    names = set(tiny().state_dict())
    assert {"tok_emb.weight", "pos_emb.weight", "final_norm.weight", "final_norm.bias", "out_head.weight",
            "trf_blocks.1.att.W_query.weight", "trf_blocks.1.att.out_proj.bias", "trf_blocks.1.att.mask",
            "trf_blocks.1.ff.layers.0.weight", "trf_blocks.1.ff.layers.2.bias", "trf_blocks.1.norm1.weight",
            "trf_blocks.1.norm2.bias"} <= names
    assert "out_head.bias" not in names


@pytest.mark.parametrize("attention, num_kv_heads, positions", VARIANTS)
def test_parameter_count_closed_form(attention, num_kv_heads, positions):
    m = tiny(attention, num_kv_heads, positions)
    V, L, d, N, H = 7, 8, 8, 2, 4
    kv = m.cfg.num_kv_heads
    att = 2 * d * d + 2 * d * kv * (d // H) + d  # W_query, out_proj (+ bias), W_key, W_value
    ff = 8 * d * d + 5 * d
    expected = V * d + (L * d if positions == "learned" else 0) + N * (att + ff + 4 * d) + 2 * d + d * V
    assert sum(p.numel() for p in m.parameters()) == expected


def test_forward_shapes_and_input_errors():
    m = tiny()
    assert m(ids(3, 5)).shape == (3, 5, 7)
    with pytest.raises(ValueError, match=r"token ids \(batch, num_tokens\), got shape \(5,\)"):
        m(ids(5))
    with pytest.raises(ValueError, match=r"9 tokens exceed context_length=8"):
        m(ids(1, 9))
    with pytest.raises(ValueError, match=r"attention_mask must have the input's shape .*\(2, 5\), got \(2, 4\)"):
        m(ids(2, 5), attention_mask=np.ones((2, 4)))
    with pytest.raises(TypeError, match=r"integer ids"):
        m(Tensor(np.zeros((1, 3))))


@pytest.mark.parametrize("attention, num_kv_heads, positions", VARIANTS)
def test_model_is_causal(attention, num_kv_heads, positions):
    m = tiny(attention, num_kv_heads, positions)
    idx = ids(2, 7).numpy()
    changed = idx.copy()
    changed[:, 4:] = (changed[:, 4:] + 1) % 7
    out, out_changed = m(Tensor(idx)).numpy(), m(Tensor(changed)).numpy()
    np.testing.assert_array_equal(out[:, :4], out_changed[:, :4])
    assert not np.allclose(out[:, 4:], out_changed[:, 4:])


def test_learned_positions_count_real_tokens_only():
    pad = np.array([[True, True, False, False], [False, False, False, False]])
    np.testing.assert_array_equal(position_ids(pad, 4), [[0, 0, 0, 1], [0, 1, 2, 3]])
    np.testing.assert_array_equal(position_ids(None, 3), [0, 1, 2])
    np.testing.assert_array_equal(position_ids(None, 2, num_real=np.array([[2], [4]])), [[2, 3], [4, 5]])
    np.testing.assert_array_equal(position_ids(pad[:, 2:], 2, num_real=np.array([[1], [0]])), [[1, 2], [0, 1]])


@pytest.mark.parametrize("attention, num_kv_heads, positions", VARIANTS)
def test_left_padding_gives_each_real_token_its_output_alone(attention, num_kv_heads, positions):
    m = tiny(attention, num_kv_heads, positions)
    seqs = [np.array([1, 2, 3, 4, 5, 6]), np.array([6, 5, 4]), np.array([2])]
    idx, mask = left_padded(seqs, 6)
    out = m(Tensor(idx), attention_mask=Tensor(mask)).numpy()
    assert np.isfinite(out).all()
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(out[i, 6 - len(seq):], m(Tensor(seq[None])).numpy()[0], rtol=1e-10, atol=1e-12)


def test_attention_weights_of_every_layer_for_heatmaps():
    m = tiny("gqa", 2)
    m(ids(2, 5))
    weights = [block.att.last_attn_weights.numpy() for block in m.trf_blocks]
    assert [w.shape for w in weights] == [(2, 4, 5, 5)] * 2
    np.testing.assert_allclose(np.array(weights).sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("attention, num_kv_heads, positions", [("mha", None, "learned"), ("gqa", 2, "rope")])
def test_whole_model_gradients(attention, num_kv_heads, positions):
    manual_seed(0)
    cfg = TransformerConfig(vocab_size=5, context_length=4, d_model=4, num_layers=2, num_heads=2,
                            num_kv_heads=kv_heads_of(attention, num_kv_heads, 2), positions=positions, qkv_bias=True)
    m = to_float64(Transformer(cfg))
    idx, mask = ids(2, 3, high=5), np.array([[0, 1, 1], [1, 1, 1]])
    assert gradcheck_module(m, lambda: m(idx, attention_mask=mask))


def test_training_mode_dropout_and_backward():
    m = tiny(dropout=0.5).train()
    idx = ids(2, 5)
    a, b = m(idx).numpy(), m(idx).numpy()
    assert not np.allclose(a, b)  # dropout draws anew
    m.eval()
    np.testing.assert_array_equal(m(idx).numpy(), m(idx).numpy())
    m.train()
    m(idx).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in m.parameters())


def test_loads_a_pytorch_gpt_model_state_dict(torch):
    m = tiny()
    twin = torch_gpt_twin(torch, m.cfg)
    m.load_state_dict(twin.state_dict())  # strict: every name is the same
    idx = ids(2, 6)
    with torch.no_grad():
        expected = twin(torch.tensor(idx.numpy())).numpy()
    np.testing.assert_allclose(m(idx).numpy(), expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------
# generate()
# ---------------------------------------------------------------------------------------

def test_generate_runs_in_eval_mode_without_a_graph_and_restores_the_mode():
    m = tiny(dropout=0.5).train()
    outputs = []
    handle = register_module_forward_hook(lambda mod, args, out: outputs.append((mod.training, out)))
    try:
        first = m.generate(ids(2, 3), 4, temperature=0.0).numpy()
    finally:
        handle.remove()
    assert not any(training for training, _ in outputs)
    assert not any(out.requires_grad for _, out in outputs if isinstance(out, Tensor))
    assert all(mod.training for mod in m.modules())
    manual_seed(99)  # greedy in eval mode: dropout's draws cannot matter
    np.testing.assert_array_equal(m.eval().generate(ids(2, 3), 4, temperature=0.0).numpy(), first)
    assert not any(mod.training for mod in m.modules())


def test_generate_sampling_is_repeatable_with_manual_seed_and_top_k_1_is_greedy():
    m = tiny().eval()
    prompt = ids(3, 2)
    manual_seed(5)
    a = m.generate(prompt, 5).numpy()
    manual_seed(5)
    np.testing.assert_array_equal(m.generate(prompt, 5).numpy(), a)
    greedy = m.generate(prompt, 5, temperature=0.0).numpy()
    np.testing.assert_array_equal(m.generate(prompt, 5, temperature=2.0, top_k=1).numpy(), greedy)
    assert m.generate(prompt, 0).shape == (3, 2)


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    manual_seed(0)
    logits = np.tile(np.log([0.1, 0.3, 0.6]), (20000, 1))
    assert set(np.unique(sample_next_token(logits, top_p=0.5))) == {2}  # 0.6 alone reaches 0.5
    nucleus = sample_next_token(logits, top_p=0.7)[:, 0]  # 0.6 does not reach 0.7; 0.6 + 0.3 does
    assert set(np.unique(nucleus)) == {1, 2}
    np.testing.assert_allclose(np.mean(nucleus == 2), 6 / 9, atol=0.015)  # renormalised over the nucleus
    assert set(np.unique(sample_next_token(logits, top_p=1.0))) == {0, 1, 2}
    m = tiny().eval()
    greedy = m.generate(ids(3, 2), 5, temperature=0.0).numpy()
    np.testing.assert_array_equal(m.generate(ids(3, 2), 5, temperature=1.5, top_p=1e-9).numpy(), greedy)


def test_stream_yields_what_generate_appends_and_restores_the_model_when_closed_early():
    m = tiny()
    prompt = ids(2, 3)
    manual_seed(7)
    whole = m.generate(prompt, 4, top_k=3).numpy()
    manual_seed(7)
    tokens = list(m.stream(prompt, 4, top_k=3))
    assert [t.shape for t in tokens] == [(2, 1)] * 4
    np.testing.assert_array_equal(np.concatenate([prompt.numpy(), *tokens], axis=1), whole)
    m.train()
    stream = m.stream(prompt, 4)
    next(stream)
    assert not m.training and m.current_pos == 3  # mid-stream: eval mode, the prompt in the cache
    stream.close()
    assert m.training and m.current_pos == 0


@pytest.mark.parametrize("top_p", [0, -0.5, 1.5, float("nan"), "0.9"])
def test_generate_refuses_a_top_p_outside_0_1(top_p):
    with pytest.raises(ValueError, match=r"top_p must be a number in \(0, 1\], got"):
        tiny().generate(ids(1, 2), 1, top_p=top_p)


def test_sample_next_token_follows_softmax_of_logits_over_temperature():
    manual_seed(0)
    logits = np.tile(np.log([1.0, 3.0, 6.0]), (20000, 1))  # probabilities 0.1, 0.3, 0.6
    freq = np.bincount(sample_next_token(logits)[:, 0], minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.1, 0.3, 0.6], atol=0.015)
    hot = np.bincount(sample_next_token(logits, temperature=2.0)[:, 0], minlength=3) / 20000
    expected = np.sqrt([1.0, 3.0, 6.0]) / np.sqrt([1.0, 3.0, 6.0]).sum()  # softmax(log p / 2)
    np.testing.assert_allclose(hot, expected, atol=0.015)
    top2 = sample_next_token(logits, top_k=2)[:, 0]
    assert set(np.unique(top2)) == {1, 2}
    np.testing.assert_allclose(np.mean(top2 == 2), 6 / 9, atol=0.015)
    assert (sample_next_token(logits, temperature=0.0)[:, 0] == 2).all()
    assert sample_next_token(logits[:2]).dtype == np.int64 and sample_next_token(logits[:2]).shape == (2, 1)


@pytest.mark.parametrize("temperature", [-1, float("nan"), float("inf"), -float("inf"), "1.0", None])
def test_generate_refuses_a_temperature_that_is_not_a_finite_number_at_least_0(temperature):
    with pytest.raises(ValueError, match=rf"temperature must be a finite number >= 0 \(0 = greedy\), "
                                         rf"got {re.escape(repr(temperature))}"):
        tiny().generate(ids(1, 2), 3, temperature=temperature)


@pytest.mark.parametrize("top_k", [0, 8, -1, 2.0, 2.5, float("nan"), "3"])
def test_generate_refuses_a_top_k_that_is_not_an_integer_in_range(top_k):
    with pytest.raises(ValueError, match=rf"top_k must be an integer in \[1, vocab_size=7\], "
                                         rf"got {re.escape(repr(top_k))}"):
        tiny().generate(ids(1, 2), 3, top_k=top_k)


def test_generate_argument_errors():
    m = tiny()
    assert m.generate(ids(1, 2), 2, temperature=np.float32(0.5), top_k=np.int64(3)).shape == (1, 4)  # numpy numbers
    with pytest.raises(ValueError, match=r"max_new_tokens must be a non-negative integer, got -2"):
        m.generate(ids(1, 2), -2)
    with pytest.raises(ValueError, match=r"a prompt of token ids \(batch, num_tokens >= 1\), got shape \(3,\)"):
        m.generate(ids(3), 2)
