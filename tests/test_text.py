"""The pydoc corpus and its split by document."""

import sys

import pytest

from tinygrad_attn.text import SEPARATOR, heldout_names, load_corpus, split_corpus


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
    documents = {f"topic{i}": "x" * 100 for i in range(10)}
    names = heldout_names(documents, 0.25)
    assert len(names) == 3  # 100, 200 < 250 <= 300 characters
    reordered = dict(reversed(list(documents.items())))
    assert heldout_names(reordered, 0.25) == names
    # the hash, not the alphabet, picks them: another fraction takes a prefix of the same order
    assert set(heldout_names(documents, 0.15)) < set(names) and names != ["topic0", "topic1", "topic2"]


def test_the_split_never_holds_out_everything():
    assert len(heldout_names({"a": "x", "b": "y"}, 0.99)) == 1
    with pytest.raises(ValueError, match="at least 2 documents, got 1"):
        heldout_names({"a": "x"})
    with pytest.raises(ValueError, match=r"heldout_fraction must be in \(0, 1\), got 1.0"):
        heldout_names({"a": "x", "b": "y"}, 1.0)
