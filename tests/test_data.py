"""The copy task: token layout, targets, left padding, the held-out split."""

import numpy as np
import pytest

from tinygrad_attn.data import PAD, SEP, IGNORE_INDEX, CopyTask, decode_answer, format_symbols


def test_layout_of_one_example():
    idx, targets, mask = CopyTask(num_symbols=10, min_len=3).batch([np.array([3, 1, 4])])
    assert idx.dtype == targets.dtype == mask.dtype == np.int64
    assert idx.tolist() == [[5, 3, 6, SEP, 5, 3]]
    assert targets.tolist() == [[-100, -100, -100, 5, 3, 6]]
    assert mask.tolist() == [[1] * 6]


def test_reverse_targets():
    idx, targets, _ = CopyTask(min_len=3, task="reverse").batch([np.array([3, 1, 4])])
    assert idx.tolist() == [[5, 3, 6, SEP, 6, 3]]
    assert targets.tolist() == [[-100, -100, -100, 6, 3, 5]]


def test_left_padding_and_mask():
    task = CopyTask(num_symbols=5, min_len=1, max_len=3)
    idx, targets, mask = task.batch([np.array([0, 1, 2]), np.array([4])])
    assert idx.shape == (2, 6)
    assert idx[1].tolist() == [PAD, PAD, PAD, PAD, 6, SEP]
    assert targets[1].tolist() == [IGNORE_INDEX] * 5 + [6]
    assert mask[1].tolist() == [0, 0, 0, 0, 1, 1]
    assert mask[0].tolist() == [1] * 6
    # targets are exactly the next real token where trained
    trained = targets != IGNORE_INDEX
    assert np.array_equal(targets[:, :-1][trained[:, :-1]], idx[:, 1:][trained[:, :-1]])
    p_idx, p_mask = task.prompts([np.array([0, 1, 2]), np.array([4])])
    assert p_idx.tolist() == [[2, 3, 4, SEP], [PAD, PAD, 6, SEP]]
    assert p_mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]


def test_random_batch_lengths_and_determinism():
    task = CopyTask(num_symbols=10, min_len=2, max_len=6)
    a = task.get_batch(np.random.default_rng(7), 64)
    b = task.get_batch(np.random.default_rng(7), 64)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    idx, targets, mask = a
    lengths = mask.sum(1) // 2
    assert lengths.min() >= 2 and lengths.max() <= 6 and len(set(lengths.tolist())) > 1
    assert idx.shape[1] == 2 * lengths.max() <= task.context_length
    assert np.array_equal((targets != IGNORE_INDEX).sum(1), lengths)
    assert np.all(idx[mask == 0] == PAD) and np.all(idx[mask == 1] != PAD)


def test_split_is_disjoint_and_about_the_right_size():
    task = CopyTask(num_symbols=4, min_len=3, max_len=5, heldout_fraction=0.2)
    heldout = {tuple(s) for s in task.heldout_set(np.random.default_rng(0), 200)}
    train = {tuple(s) for s in task.sample(np.random.default_rng(1), 3000, "train")}
    assert len(heldout) > 50 and len(train) > 500
    assert heldout.isdisjoint(train)
    assert all(task.is_heldout(s) for s in heldout) and not any(task.is_heldout(s) for s in train)
    # the hash puts about heldout_fraction of all sequences of one length on the held-out side
    every = np.stack(np.meshgrid(*[range(4)] * 5, indexing="ij"), -1).reshape(-1, 5)
    assert 0.15 < np.mean([task.is_heldout(s) for s in every]) < 0.25


def test_split_ignores_seed_and_task():
    s = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    verdicts = {CopyTask(task=t).is_heldout(s) for t in ("copy", "reverse")}
    assert len(verdicts) == 1


@pytest.mark.parametrize("num_symbols,min_len,max_len", [(1, 2, 2), (1, 1, 1), (1, 3, 3)])
def test_too_small_a_space_is_refused_when_the_task_is_made(num_symbols, min_len, max_len):
    with pytest.raises(ValueError, match=f"num_symbols={num_symbols}, min_len={min_len}, max_len={max_len} give too "
                                         "few distinct sequences"):
        CopyTask(num_symbols, min_len, max_len)  # one side of the split would get (almost) no draws


def test_heldout_share_counts_small_lengths_and_trusts_the_hash_for_large_ones():
    task = CopyTask(num_symbols=4, min_len=2, max_len=2)  # 16 sequences, counted one by one
    every = [(a, b) for a in range(4) for b in range(4)]
    assert task.heldout_share() == np.mean([task.is_heldout(s) for s in every]) > 0
    assert CopyTask(num_symbols=10, min_len=4, max_len=8).heldout_share() == 0.1  # 10**4 or more per length
    # a share that small would make the sampler give up: what the check at construction prevents
    task = CopyTask(num_symbols=2, min_len=4, max_len=4)
    assert all(task.is_heldout(s) for s in task.sample(np.random.default_rng(0), 20, "heldout"))


def test_split_of_names_what_the_training_saw():
    task = CopyTask(num_symbols=10, min_len=4, max_len=8)
    heldout = task.heldout_set(np.random.default_rng(0), 1)[0]
    assert task.split_of(heldout) == "held out: never trained on"
    assert task.split_of(task.sample(np.random.default_rng(0), 1)[0]) == "training split"
    assert task.split_of([1, 2]) == "length 2: outside the trained lengths 4..8"


def test_parse_and_format():
    task = CopyTask(num_symbols=10)
    assert task.parse("3 1 4,1 5").tolist() == [3, 1, 4, 1, 5]
    with pytest.raises(ValueError, match="symbol 12 .* 0..9"):
        task.parse("3 12 4")
    with pytest.raises(ValueError, match="integers"):
        task.parse("3 x")
    with pytest.raises(ValueError, match="symbol 99999999999999999999 is outside"):  # not an int64 OverflowError
        task.parse("1 99999999999999999999")
    assert task.parse("1 2 3", context_length=7).tolist() == [1, 2, 3]  # 2 * 3 + 1 = 7 tokens fit
    with pytest.raises(ValueError, match="4 symbols need a context of 9 tokens.*is 7: at most 3 symbols"):
        task.parse("1 2 3 4", context_length=7)
    assert format_symbols([3, 1, 4]) == "3 1 4" and format_symbols([2, -1]) == "2 ?"
    assert decode_answer(np.array([5, 3, SEP, 9]), 3).tolist() == [3, 1, -1]


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_symbols=0), "num_symbols"),
    (dict(min_len=5, max_len=3), "max_len=3 is shorter than min_len=5"),
    (dict(task="sort"), "'sort'"),
    (dict(heldout_fraction=1.0), "heldout_fraction"),
    (dict(heldout_fraction=0.01), r"heldout_fraction must be in \[0.03, 0.97\]"),
])
def test_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CopyTask(**kwargs)
