"""The pydoc corpus, its split by document, the sliding windows, and the count-based baselines."""

import math
import sys

import numpy as np
import pytest

from tinygrad_attn.text import (MAX_QUOTED, PASSAGE, SEPARATOR, TOKENIZERS, TextDataset, TextTask, bigram_loss, heldout_names,
                                load_corpus, nats_per_char, perplexity, split_corpus, tokenizer_from_state,
                                quoted_shares, tokenizer_state, train_tokenizer, unigram_loss)
from tinygrad_attn.tokenizers import CharTokenizer, TokenizerError


@pytest.fixture(scope="module")
def documents():
    return load_corpus()


# ---- the corpus and its split ------------------------------------------------------------------

def test_the_corpus_is_the_pydoc_topics(documents):
    assert list(documents) == sorted(documents) and len(documents) > 60
    assert "assert" in documents and documents["assert"].startswith('The "assert" statement')
    assert sum(map(len, documents.values())) > 300_000
    assert not any(SEPARATOR in text for text in documents.values())  # so it marks every boundary


def test_a_python_without_pydoc_data_gets_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)  # as if the module were stripped
    with pytest.raises(RuntimeError, match="pydoc_data.topics module, and this Python has none"):
        load_corpus()


def test_the_split_holds_out_whole_topics_about_a_tenth_of_the_characters(documents):
    names = heldout_names(documents)
    assert names == sorted(names) and 1 <= len(names) < len(documents) / 2
    total = sum(map(len, documents.values()))
    held = sum(len(documents[n]) for n in names)
    largest = max(map(len, documents.values()))
    assert 0.1 * total <= held < 0.1 * total + largest  # it stops at the first document that reaches 10%
    train, heldout = split_corpus(documents)
    assert heldout.count(SEPARATOR) == len(names) - 1 and train.count(SEPARATOR) == len(documents) - len(names) - 1
    assert len(train) + len(heldout) == total + (len(documents) - 2) * len(SEPARATOR)
    for name in names:
        assert documents[name] in heldout and documents[name] not in train


def test_the_split_depends_on_the_names_only():
    rng = np.random.default_rng(0)
    documents = {f"topic{i}": "".join(rng.choice(list("abcdefgh"), 100)) for i in range(10)}
    names = heldout_names(documents, 0.25)
    assert len(names) == 3  # 100, 200 < 250 <= 300 characters
    reordered = dict(reversed(list(documents.items())))
    assert heldout_names(reordered, 0.25) == names
    # the hash, not the alphabet, picks them: another fraction takes a prefix of the same order
    assert set(heldout_names(documents, 0.15)) < set(names) and names != ["topic0", "topic1", "topic2"]


def test_a_document_that_quotes_another_is_never_held_out(documents):
    train, heldout = split_corpus(documents)
    passages = {train[i:i + PASSAGE] for i in range(len(train) - PASSAGE + 1)}
    quoted = [heldout[i:i + PASSAGE] in passages for i in range(len(heldout) - PASSAGE + 1)]
    assert np.mean(quoted) < MAX_QUOTED  # the training text holds (almost) none of the held-out passages
    shares = quoted_shares(tuple(documents.items()))
    assert shares["compound"] > 0.5 and shares["augassign"] > 0.9  # they hold "if", "for", ...; "assignment" them
    assert {"compound", "augassign"}.isdisjoint(heldout_names(documents))
    twins = {"a": "the same text, quoted in full" * 4, "b": "the same text, quoted in full" * 4, "c": "x" * 200}
    assert heldout_names(twins, 0.2) == ["c"]
    with pytest.raises(ValueError, match="every document shares passages of 64 characters with another"):
        heldout_names({"a": "y" * 100, "b": "y" * 100})


def test_the_split_never_holds_out_everything():
    assert len(heldout_names({"a": "x", "b": "y"}, 0.99)) == 1
    with pytest.raises(ValueError, match="at least 2 documents, got 1"):
        heldout_names({"a": "x"})
    with pytest.raises(ValueError, match=r"heldout_fraction must be in \(0, 1\), got 1.0"):
        heldout_names({"a": "x", "b": "y"}, 1.0)


# ---- windows -----------------------------------------------------------------------------------

def test_windows_with_a_stride_are_the_books_gptdataset():
    ds = TextDataset(np.arange(10) * 10, context_length=4, stride=3)
    assert len(ds) == 2  # i in range(0, 10 - 4, 3)
    inputs, targets = ds[1]
    assert inputs.dtype == targets.dtype == np.int64
    assert inputs.tolist() == [30, 40, 50, 60] and targets.tolist() == [40, 50, 60, 70]
    assert [x.tolist() for x in ds[-2]] == [[0, 10, 20, 30], [10, 20, 30, 40]]
    with pytest.raises(IndexError, match="window 2 of a dataset of 2 windows"):
        ds[2]


def test_every_window_targets_its_inputs_shifted_by_one(rng):
    ids = rng.integers(0, 50, size=101)
    ds = TextDataset(ids, context_length=8, stride=1)
    assert len(ds) == 93
    for i in (0, 50, 92):
        inputs, targets = ds[i]
        assert np.array_equal(inputs, ids[i:i + 8]) and np.array_equal(targets, ids[i + 1:i + 9])


def test_random_batches_are_windows_of_the_dataset_and_reproducible():
    ds = TextDataset(np.arange(1000), context_length=16, stride=5)
    idx, targets = ds.get_batch(np.random.default_rng(3), 32)
    assert idx.shape == targets.shape == (32, 16) and idx.dtype == np.int64
    assert np.all(idx[:, 0] % 5 == 0) and len(set(idx[:, 0].tolist())) > 20  # window starts, many different
    assert np.array_equal(idx, idx[:, :1] + np.arange(16)) and np.array_equal(targets, idx + 1)
    again, _ = ds.get_batch(np.random.default_rng(3), 32)
    assert np.array_equal(idx, again)


def test_evaluation_batches_visit_every_window_once_in_order():
    ds = TextDataset(np.arange(100), context_length=10, stride=10)
    batches = list(ds.batches(4))
    assert [b[0].shape for b in batches] == [(4, 10), (4, 10), (1, 10)]  # 9 windows: 0, 10, ..., 80
    idx = np.concatenate([b[0] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    assert idx[:, 0].tolist() == list(range(0, 90, 10)) and np.array_equal(targets, idx + 1)


def test_dataset_errors():
    with pytest.raises(ValueError, match="context_length=0, stride=1"):
        TextDataset(np.arange(10), 0, 1)
    with pytest.raises(ValueError, match="context_length=4, stride=0"):
        TextDataset(np.arange(10), 4, 0)
    with pytest.raises(ValueError, match=r"5 tokens are too few for one window: context_length=5 needs 6"):
        TextDataset(np.arange(5), 5, 1)
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        TextDataset(np.zeros((2, 5)), 2, 1)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        TextDataset(np.arange(10), 4, 1).get_batch(np.random.default_rng(0), 0)


# ---- baselines ---------------------------------------------------------------------------------

def test_unigram_loss_by_hand():
    # add-1 counts of [0, 0, 1] over 3 tokens: 3, 2, 1 of 6
    assert unigram_loss([0, 0, 1], [0, 2], vocab_size=3) == pytest.approx((math.log(2) + math.log(6)) / 2)
    assert unigram_loss(np.arange(7).repeat(3), [6, 0, 3], vocab_size=7) == pytest.approx(math.log(7))


def test_bigram_loss_by_hand():
    # pairs of [0, 1, 0, 1]: (0, 1) twice, (1, 0) once; the first held-out token is scored by the unigram
    p_first = 3 / 6  # (2 + 1) / (4 + 2)
    p_1_after_0 = (2 + 1) / (2 + 1 * 2)
    p_1_after_1 = (0 + 1) / (1 + 1 * 2)
    expected = -(math.log(p_first) + math.log(p_1_after_0) + math.log(p_1_after_1)) / 3
    assert bigram_loss([0, 1, 0, 1], [0, 1, 1], vocab_size=2, k=1.0) == pytest.approx(expected)


def test_bigram_beats_unigram_on_the_corpus(documents):
    train, heldout = split_corpus(documents)
    tok = CharTokenizer.train(train)
    train_ids, heldout_ids = tok.encode(train), tok.encode(heldout)
    unigram = unigram_loss(train_ids, heldout_ids, tok.vocab_size)
    bigram = bigram_loss(train_ids, heldout_ids, tok.vocab_size)
    assert bigram < unigram - 0.5 and unigram < math.log(tok.vocab_size)  # 2.5 and 3.3 nats measured, log V = 4.6
    assert bigram_loss(train_ids, [0, 1, 0], tok.vocab_size) < math.inf  # pairs never seen: finite


def test_conversions():
    assert nats_per_char(2.0, num_tokens=10, num_chars=40) == 0.5
    assert perplexity(math.log(5.0)) == pytest.approx(5.0)


def test_baseline_errors():
    with pytest.raises(ValueError, match=r"heldout_ids holds id 3, outside the vocabulary 0..2"):
        unigram_loss([0, 1], [1, 3], vocab_size=3)
    with pytest.raises(ValueError, match=r"train_ids holds id -1"):
        bigram_loss([0, -1], [1, 1], vocab_size=3)
    with pytest.raises(ValueError, match=r"smoothing constant must be > 0.*got 0"):
        bigram_loss([0, 1], [1, 1], vocab_size=3, k=0)
    with pytest.raises(ValueError, match=r"heldout_ids must be a 1-d sequence of at least 1 ids, got shape \(0,\)"):
        unigram_loss([0, 1], [], vocab_size=3)
    with pytest.raises(ValueError, match=r"train_ids must be a 1-d sequence of at least 2 ids"):
        bigram_loss([0], [1], vocab_size=3)


# ----- the task the training loop uses -----

@pytest.mark.parametrize("kind", TOKENIZERS)
def test_a_text_task_rebuilds_from_its_tokenizer_state(kind, documents):
    train_text, heldout_text = split_corpus(documents)
    tokenizer = train_tokenizer(kind, train_text, heldout_text, vocab_size=300)
    task = TextTask(tokenizer_from_state(tokenizer_state(tokenizer)), context_length=32)
    assert task.vocab_size == tokenizer.vocab_size
    assert task.tokenizer.encode(heldout_text[:500]) == tokenizer.encode(heldout_text[:500])
    assert task.tokenizer.decode(task.heldout_ids[:200].tolist()) == tokenizer.decode(task.heldout_ids[:200].tolist())
    idx, targets, mask = task.get_batch(np.random.default_rng(0), 4)
    assert idx.shape == targets.shape == (4, 32) and np.array_equal(idx[:, 1:], targets[:, :-1]) and mask is None
    assert len(task.heldout) == (len(task.heldout_ids) - 1) // 32  # tiled: each held-out token scored once
    base = task.baselines()
    assert base["bigram"] < base["unigram"] < math.log(task.vocab_size)
    assert task.chars_per_token == pytest.approx(len(heldout_text) / len(task.heldout_ids))
    assert (task.chars_per_token == 1.0) == (kind == "char")


def test_the_char_alphabet_covers_the_held_out_documents_and_bpe_learns_from_training_only(documents):
    train_text, heldout_text = split_corpus(documents)
    chars = train_tokenizer("char", train_text, heldout_text)
    assert set(chars.itos) == set(train_text + heldout_text)
    bpe = train_tokenizer("bpe", train_text, "unseen text: ignored", vocab_size=260)
    assert bpe.merges == train_tokenizer("bpe", train_text, heldout_text, vocab_size=260).merges
    with pytest.raises(ValueError, match=r"tokenizer must be one of \('char', 'bpe'\), got 'word'"):
        train_tokenizer("word", train_text, heldout_text)


@pytest.mark.parametrize("state", [None, {"kind": "sentencepiece"}, {"kind": "char"}, {"kind": "bpe", "merges": 5},
                                   {"kind": "bpe", "merges": [[1, 2, 3]]}])
def test_a_malformed_tokenizer_state_is_a_tokenizer_error(state):
    with pytest.raises(TokenizerError):
        tokenizer_from_state(state)
