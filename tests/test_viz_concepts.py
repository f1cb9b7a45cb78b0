"""The conceptual figures show what the real layers compute: read back from their DOT text."""

import re

import numpy as np
import pytest

from tinygrad_attn.viz import concepts

from test_attention import INPUTS


def cells(drawing, node):
    """The texts of the cells of one node's table, in reading order."""
    label = re.search(rf"^  {node} \[label=<(.*)>\];$", drawing.dot, re.M).group(1)
    return re.findall(r"<TD[^>]*>(?:<FONT[^>]*>)?([^<]*)", label)


def test_the_book_inputs_are_the_tests_inputs():
    np.testing.assert_array_equal(concepts.JOURNEY, INPUTS.astype(np.float32))


def test_journey_heatmap_shows_the_books_weights_with_the_words():
    texts = cells(concepts.journey_heatmap(), "weights")
    journey = texts.index("journey", 8)  # the row label, after the title and the column labels
    assert texts[journey + 1:journey + 7] == ["0.14", "0.24", "0.23", "0.12", "0.11", "0.16"]  # book: 0.1385 0.2379 ...
    assert texts[1:8] == ["", *concepts.JOURNEY_WORDS]  # column labels


def test_causal_mask_figure_masks_the_future_to_exactly_zero_and_rows_sum_to_one():
    d = concepts.causal_mask()
    weights = cells(d, "weights")
    rows = [weights[i:i + 8] for i in range(9, len(weights), 8)]  # label, 6 weights, sum
    assert [r[0] for r in rows] == concepts.JOURNEY_WORDS
    assert all(r[1 + j] == "0" for i, r in enumerate(rows) for j in range(i + 1, 6))  # 15 masked, exactly 0
    assert all(r[1 + j] not in ("0", "0.00") for i, r in enumerate(rows) for j in range(i + 1))
    assert [r[-1] for r in rows] == ["1.00"] * 6
    assert cells(d, "masked").count("−∞") == 15 and cells(d, "mask").count("True") == 15


def test_head_split_figure_follows_each_number_into_its_head_and_back():
    d = concepts.head_split(tokens=3, d_out=6, heads=2)
    split = cells(d, "split")
    head1 = split.index("head 1")
    assert split[head1 + 1:head1 + 5] == ["t0", "3", "4", "5"]  # head 1 holds columns 3..5 of every token
    merged = cells(d, "merged")
    assert merged[-7:] == ["t2", "0", "1", "2", "0", "1", "2"]  # heads side by side again
    assert "(1, 3, 2, 3)" in cells(d, "view") and "(1, 2, 3, 3)" in cells(d, "split")


@pytest.mark.parametrize("kv", [8, 2, 1])
def test_gqa_figure_draws_each_query_head_to_the_key_value_head_it_reads(kv):
    d = concepts.gqa_sharing(heads=8, kv_options=(8, 2, 1))
    edges = re.findall(rf"q_{kv}:q(\d+):s -> kv_{kv}:k(\d+):n", d.dot)
    assert [(int(q), int(k)) for q, k in edges] == [(h, h // (8 // kv)) for h in range(8)]  # repeat_interleave order
    assert f"its KV cache holds {kv} of 8 heads" in d.dot


def test_kv_cache_figure_gives_each_step_the_mask_rows_of_its_absolute_positions():
    d = concepts.kv_cache(steps=(3, 1, 2, 1))
    texts = cells(d, "steps")
    assert "decode 2 tokens: T_q = 2, T_k = 6, the rows 4:6 of the causal mask" in texts
    step = texts.index("decode 2 tokens: T_q = 2, T_k = 6, the rows 4:6 of the causal mask")
    query4 = texts.index("query 4", step)
    assert texts[query4 + 6] == "0" and "0" not in texts[query4 + 1:query4 + 6]  # key 5 is query 4's future
    assert texts[query4 + 7] == ""  # the slot the cache has not reached


def test_left_padding_figure_blocks_padding_keys_and_gives_padding_queries_zero_weights():
    texts = cells(concepts.left_padding(pad=2), "weights")
    rows = [texts[i:i + 8] for i in range(9, len(texts), 8)]
    assert [r[0] for r in rows] == ["query PAD", "query PAD", "query Your", "query journey", "query starts",
                                    "query with"]
    assert [r[-1] for r in rows] == ["0", "0", "1.00", "1.00", "1.00", "1.00"]  # zero weights, not NaN
    assert all(r[1] == r[2] == "pad" for r in rows[1:]) and rows[0][1] == "pad"  # nobody sees a padding key
    assert rows[3][1:7] == ["pad", "pad", "0.49", "0.51", "future", "future"]  # "journey" sees Your and itself


def test_qkv_flow_is_the_trace_of_the_real_layer_with_its_matrices():
    d = concepts.qkv_flow()
    for name in ("queries (6, 2)", "keys (6, 2)", "values (6, 2)", "attn_scores (6, 6)", "attn_weights (6, 6)"):
        assert name in d.dot
    assert d.dot.count('WIDTH="10" HEIGHT="10"') >= 6 * 6 * 3 + 6 * 2 * 4  # scores, ..., Q, K, V, context, cell by cell
