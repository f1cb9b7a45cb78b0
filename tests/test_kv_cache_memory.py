"""Cache memory: every rung's cache_bytes() against the arrays its cache really holds, the formula at
published sizes, and the tables of docs/kv-cache-memory.md against what their generator prints."""

import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_attn import Tensor, manual_seed
from tinygrad_attn.nn import Transformer, TransformerConfig
from tinygrad_attn.nn.attention import kv_cache_bytes

from attention_testing import randn
from test_kv_cache import LAYER_KINDS, MODEL_KINDS, attention_layer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed: bare `pytest` needs this
from benchmarks import kv_cache_memory  # noqa: E402


def cache_nbytes(layer):
    return sum(t.numpy().nbytes for t in layer.cache)


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_cache_bytes_is_what_the_cache_arrays_hold(kind):
    layer = attention_layer(kind, rope=True, context_length=16)  # float64: 8 bytes a number
    x = randn(1, 16, 8)
    layer(x[:, :5], use_cache=True)
    assert cache_nbytes(layer) == layer.cache_bytes(5, itemsize=8)
    assert cache_nbytes(layer) > 0 or kind == "swa_1"  # a window of 1 keeps nothing
    for t in range(5, 16):  # decode past the window of the sliding-window kinds
        layer(x[:, t:t + 1], use_cache=True)
        assert cache_nbytes(layer) == layer.cache_bytes(t + 1, itemsize=8)
    layer.reset_cache()
    layer(randn(3, 7, 8), use_cache=True)
    assert cache_nbytes(layer) == 3 * layer.cache_bytes(7, itemsize=8)  # per sequence of a batch


def test_cache_bytes_of_each_rung_in_closed_form():
    mha, gqa, mqa, swa, swa_1, mla = (attention_layer(kind, rope=False, context_length=16)
                                      for kind in ("mha", "gqa", "mqa", "swa", "swa_1", "mla"))
    per_token = 2 * 4 * 2 * 2  # keys and values, 4 heads of head_dim 2, 2 bytes a number
    assert [m.cache_bytes(10) for m in (mha, gqa, mqa)] == [10 * per_token, 10 * per_token // 2, 10 * per_token // 4]
    assert swa.cache_bytes(10) == 2 * per_token and swa.cache_bytes(1) == per_token  # window 3: at most 2 tokens
    assert swa_1.cache_bytes(10) == 0  # a window of 1: each token sees only itself, nothing is kept
    assert mla.cache_bytes(10) == 10 * 3 * 2  # the latent alone, kv_latent_dim = 3


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_models_cache_is_the_sum_of_its_layers(kind):
    manual_seed(0)
    cfg = TransformerConfig(vocab_size=11, context_length=12, d_model=8, num_layers=3, num_heads=4,
                            **MODEL_KINDS[kind])
    model = Transformer(cfg)
    model(Tensor(np.zeros((1, 9), dtype=np.int64)), use_cache=True)
    measured = sum(cache_nbytes(block.att) for block in model.trf_blocks)
    assert measured == sum(block.att.cache_bytes(9, itemsize=4) for block in model.trf_blocks)  # float32


def test_the_formula_at_published_sizes():
    KiB = 1024
    assert 32 * kv_cache_bytes(1, num_kv_heads=32, head_dim=128) == 512 * KiB  # Llama-2-7B, as chapter 7 has it
    assert 32 * kv_cache_bytes(1, num_kv_heads=8, head_dim=128) == 128 * KiB  # Llama-3-8B
    assert 60 * kv_cache_bytes(1, kv_latent_dim=512 + 64) == 60 * 576 * 2  # DeepSeek-V2: 4.5 d_h l numbers
    assert kv_cache_bytes(100_000, num_kv_heads=16, head_dim=128, window=1024) == 1023 * 2 * 16 * 128 * 2
    rows = {name: layers for name, _, _, layers in kv_cache_memory.PUBLISHED}
    gemma = rows["Gemma-3-27B"]
    assert sum(sizes["window"] is None for _, sizes in gemma) == 10 and len(gemma) == 62  # 52 local, 10 global
    assert [sizes["window"] for _, sizes in gemma[:6]] == [1024] * 5 + [None]


def test_the_docs_page_shows_the_tables_the_generator_prints():
    page = kv_cache_memory.PAGE.read_text()
    measured, published = kv_cache_memory.tables()
    assert measured in page, "the measured table changed: python -m benchmarks.kv_cache_memory --write"
    assert published in page, "the published table changed: python -m benchmarks.kv_cache_memory --write"
    for name, _, measured_bytes, formula in kv_cache_memory.measure():
        assert measured_bytes == formula, name


def test_write_replaces_the_tables_in_place(tmp_path, monkeypatch, capsys):
    page = tmp_path / "page.md"
    original = kv_cache_memory.PAGE.read_text()
    page.write_text(original.replace("| 24,576 |", "| 1 |"))  # a stale figure
    monkeypatch.setattr(kv_cache_memory, "PAGE", page)
    kv_cache_memory.main(["--write"])
    assert page.read_text() == original
    assert "wrote" in capsys.readouterr().out


def test_layers_without_a_cache_hold_no_bytes():
    from tinygrad_attn.nn import BidirectionalAttention, CrossAttention
    assert BidirectionalAttention(8, 8, 6, 0.0, 2).cache_bytes(10) == 0
    assert CrossAttention(8, 8, 6, 0.0, 2).cache_bytes(10) == 0
