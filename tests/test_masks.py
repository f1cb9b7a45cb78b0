"""The one mask convention inside the layers (True = blocked) and its two public edges."""

import numpy as np
import pytest

from tinygrad_attn import Tensor
from tinygrad_attn.nn import functional as F
from tinygrad_attn.nn.masks import causal_blocked, mask_scores, padding_mask


def test_causal_blocked_hides_the_future_of_queries_aligned_with_the_last_keys():
    assert causal_blocked(3, 3).astype(int).tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    # two new queries after three cached keys sit at positions 3 and 4: the last rows of the square mask
    assert np.array_equal(causal_blocked(2, 5), causal_blocked(5, 5)[3:])
    # one decoded query sees every key: the top-left slice mask[:1, :T_k] would let it see key 0 only
    assert not causal_blocked(1, 5).any() and causal_blocked(5, 5)[:1].sum() == 4


def test_offset_zero_aligns_top_left_as_pytorchs_is_causal():
    assert causal_blocked(2, 4, offset=0).astype(int).tolist() == [[0, 1, 1, 1], [0, 0, 1, 1]]


def test_window_keeps_only_the_most_recent_keys():
    band = causal_blocked(5, 5, window=2)
    assert (~band).astype(int).tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0],
                                            [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]]
    assert np.array_equal(causal_blocked(2, 5, window=2), band[3:])
    assert np.array_equal(causal_blocked(4, 4, window=4), causal_blocked(4, 4))  # a window as long as it all


def test_the_public_edges_convert_to_true_blocked():
    assert np.array_equal(F.causal_mask(2, 5).numpy(), ~causal_blocked(2, 5))  # SDPA's True = may attend
    assert padding_mask(Tensor([[0, 1, 1]]), (1, 3)).tolist() == [[True, False, False]]  # 1 = real token
    assert padding_mask(np.ones((2, 3)), (2, 3)) is None  # nothing is padding
    with pytest.raises(ValueError, match=r"1 for real tokens and 0 for padding, got the values \[2\]"):
        padding_mask(np.array([[1, 2]]), (1, 2))
    with pytest.raises(ValueError, match=r"input's shape without its last dim, \(1, 3\), got \(1, 2\)"):
        padding_mask(np.ones((1, 2)), (1, 3))
    with pytest.raises(ValueError, match=r"^memory_mask must have the memory's shape without its last dim"):
        padding_mask(np.ones((1, 2)), (1, 3), name="memory_mask", of="memory")  # cross-attention's own mask


def test_mask_scores_fills_blocked_and_padding_keys_with_minus_infinity():
    scores = Tensor(np.zeros((2, 1, 3, 3)))  # (b, heads, T_q, T_k)
    pad = np.array([[True, False, False], [False, False, False]])
    out = mask_scores(scores, causal_blocked(3, 3), pad).numpy()
    assert np.isneginf(out[0, 0, :, 0]).all()  # padding key 0 of the first row, for every query
    assert np.isneginf(out[1, 0]).sum() == 3  # the second row: the causal triangle only
    assert mask_scores(scores, None, None) is scores
