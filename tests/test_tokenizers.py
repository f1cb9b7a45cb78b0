"""Tokenizers: round trips, the book's word tokenizer, BPE against a recount-everything reference, files."""

import collections
import json
import os

import pytest

from tinygrad_attn import text as corpus
from tinygrad_attn.tokenizers import (ENDOFTEXT, UNK, BPETokenizer, CharTokenizer, TokenizerError, WordTokenizer,
                                      merge, split_chunks, split_words)

# Pieces of text that stress UTF-8 and the chunk pattern: multi-byte letters, emoji with
# modifiers and joiners, CJK, combining marks, right-to-left script, unusual whitespace, digits
# that are not ASCII, an apostrophe that starts no contraction.
UNICODE_PIECES = ["a", "Z", " ", "  ", "\n", "\t", "\u00a0", "\u3000", "é", "e\u0301", "ß", "ﬁ", "😀", "👍🏽",
                  "\U0001f468\u200d\U0001f469\u200d\U0001f467", "🇫🇷", "中文", "日本語", "한국어", "عربى",
                  "\u05e9\u05b8", "٣", "²", "_", "'", "'s", "--", "\"", "€", "\x00", "\U0010fffd"]


def random_unicode(rng, n):
    return "".join(rng.choice(UNICODE_PIECES, size=n))


@pytest.fixture(scope="module")
def train_text():
    return corpus.split_corpus(corpus.load_corpus())[0]


# ---- characters ----------------------------------------------------------------------------------

def test_char_vocabulary_is_the_sorted_distinct_characters_and_round_trips(rng):
    tok = CharTokenizer.train("hello, world")
    assert tok.itos == [" ", ",", "d", "e", "h", "l", "o", "r", "w"] and tok.vocab_size == 9
    assert tok.encode("hello") == [4, 3, 5, 5, 6]
    text = "".join(rng.choice(tok.itos, size=200))
    assert tok.decode(tok.encode(text)) == text
    assert CharTokenizer(tok.itos).encode(text) == tok.encode(text)


def test_char_unknown_characters_are_named_with_their_positions():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match=r"2 characters .*'é' \(U\+00E9\) at position 1, '😀' \(U\+1F600\) at "
                                         r"position 4; train the tokenizer on a text that contains them"):
        tok.encode("aébc😀")


def test_char_errors():
    with pytest.raises(ValueError, match="empty text"):
        CharTokenizer.train("")
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        CharTokenizer.train(b"abc")
    with pytest.raises(ValueError, match=r"characters repeated in the vocabulary: \['a'\]"):
        CharTokenizer("aba")
    with pytest.raises(ValueError, match=r"id 3 at position 1 is outside the vocabulary 0..2"):
        CharTokenizer.train("abc").decode([0, 3])
    with pytest.raises(ValueError, match=r"id -1 at position 0"):
        CharTokenizer.train("abc").decode([-1])


# ---- words, as the book builds them ------------------------------------------------------------------

def test_split_words_is_the_books_preprocessing():
    assert split_words("Hello, world. Is this-- a test?") == ["Hello", ",", "world", ".", "Is", "this", "--", "a",
                                                                "test", "?"]
    assert split_words("  \n ") == []


def test_word_tokenizer_v2_on_the_books_sentence():
    tok = WordTokenizer.train("In the sunlit terraces of the house, do you like tea? I do.", [ENDOFTEXT, UNK])
    assert list(tok.str_to_int) == [",", ".", "?", "I", "In", "do", "house", "like", "of", "sunlit", "tea", "terraces",
                                    "the", "you", ENDOFTEXT, UNK]
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."
    ids = tok.encode(text)
    assert ids == [15, 0, 5, 13, 7, 10, 2, 14, 4, 12, 9, 11, 8, 12, 15, 1]
    assert tok.decode(ids) == "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."


def test_word_tokenizer_v1_names_the_unknown_words():
    tok = WordTokenizer.train("do you like tea? Or not, no!")
    assert tok.vocab_size == 10 and UNK not in tok.str_to_int
    with pytest.raises(ValueError, match=r"words not in the vocabulary: 'Hello', 'coffee'; .* add the special token "
                                         r"'<\|unk\|>'"):
        tok.encode("Hello, do you like coffee? Hello!")


def test_word_decode_removes_the_space_before_punctuation_as_the_book_does():
    text = 'He said: "yes, (maybe) it\'s fine--really!"'
    tok = WordTokenizer.train(text)
    # lossy, as in the book: only , . ? ! " ( ) ' lose the space before them
    assert tok.decode(tok.encode(text)) == 'He said :" yes,( maybe) it\' s fine -- really!"'


def test_word_tokenizer_errors():
    with pytest.raises(ValueError, match=r"special token '<\|end of text\|>' would be split"):
        WordTokenizer.train("a b", ["<|end of text|>"])
    with pytest.raises(ValueError, match="special tokens repeated"):
        WordTokenizer.train("a b", [UNK, UNK])
    with pytest.raises(ValueError, match="no words"):
        WordTokenizer.train(" \n ", [UNK])
    with pytest.raises(ValueError, match=r"ids of a vocabulary of 2 tokens must be 0..1"):
        WordTokenizer({"a": 0, "b": 2})
    with pytest.raises(ValueError, match=r"id 5 at position 0 is outside the vocabulary 0..1"):
        WordTokenizer({"a": 0, "b": 1}).decode([5])


# ---- BPE ---------------------------------------------------------------------------------------

def test_merge_replaces_left_to_right_without_overlap():
    assert merge([1, 2, 1, 2, 3], (1, 2), 9) == [9, 9, 3]
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]
    assert merge([1, 1, 1, 1], (1, 1), 9) == [9, 9]
    assert merge([2, 1], (1, 2), 9) == [2, 1]


def test_bpe_reproduces_the_classic_example():
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=259)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]  # Z = aa, Y = ab, X = ZY
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert [tok.vocab[i] for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_bpe_ties_go_to_the_smallest_pair_not_the_first_seen():
    # every pair occurs once; the pair counted first after the first merge would be (256, 99)
    assert BPETokenizer.train("abcd", 259).merges == [(97, 98), (99, 100), (256, 257)]


def test_chunks_join_up_to_the_text(rng):
    assert split_chunks("Hello world's  2024!") == ["Hello", " world", "'s", " ", " 2024", "!"]
    for n in (0, 1, 5, 200):
        text = random_unicode(rng, n)
        assert "".join(split_chunks(text)) == text


def test_bpe_round_trips_any_unicode(rng, train_text):
    tok = BPETokenizer.train(train_text[:20000] + random_unicode(rng, 300), 400)
    assert tok.encode("") == [] and tok.decode([]) == ""
    for n in (1, 2, 7, 50, 500):
        for _ in range(5):
            text = random_unicode(rng, n)
            ids = tok.encode(text)
            assert tok.decode(ids) == text
            assert all(0 <= i < 400 for i in ids)


def test_bpe_decode_of_a_split_character_uses_the_replacement_character():
    tok = BPETokenizer.train("plain ascii", 256)
    ids = tok.encode("é😀")  # 2 + 4 bytes, no merges
    assert ids == [0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80]
    assert tok.decode(ids[:1]) == "\ufffd" and tok.decode(ids[1:]) == "\ufffd😀"
    assert tok.decode(ids[:2] + ids[3:]) == "é\ufffd\ufffd\ufffd"  # F0 98 80: not a character, three bad bytes


def test_bpe_encode_errors():
    tok = BPETokenizer.train("abc", 256)
    with pytest.raises(TypeError, match="got list"):
        tok.encode([97])
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("a\ud800")
    with pytest.raises(ValueError, match=r"id 256 at position 1 is outside the vocabulary 0..255"):
        tok.decode([97, 256])


def test_bpe_on_the_corpus_round_trips_and_compresses(train_text):
    documents = corpus.load_corpus()
    tok = BPETokenizer.train(train_text, 1000)
    everything = corpus.SEPARATOR.join(documents.values())
    ids = tok.encode(everything)
    assert tok.decode(ids) == everything
    assert len(everything) / len(ids) > 2.5  # characters per token; 2.9 measured
    assert tok.encode(everything) == ids  # a second time, from the chunk cache


def test_bpe_training_errors():
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 256.*got 255"):
        BPETokenizer.train("abc", 255)
    with pytest.raises(ValueError, match="vocab_size must be an integer.*got 300.0"):
        BPETokenizer.train("abc", 300.0)
    with pytest.raises(ValueError, match="empty text"):
        BPETokenizer.train("", 300)
    with pytest.raises(TypeError, match="text must be a str"):
        BPETokenizer.train(None, 300)
    # "ab": one merge and the text is a single token
    with pytest.raises(ValueError, match=r"vocab_size=258 is too large .*after 1 merges .*at most vocab_size=257"):
        BPETokenizer.train("ab", 258)


# ---- the incremental trainer against the obvious one -------------------------------------------

def naive_bpe(text, num_merges):
    """Recount every pair of every chunk before each merge; ties go to the smallest pair.
    Returns the merges (stopping early when no pair is left) and the final ids of the text."""
    chunks = [list(chunk.encode("utf-8")) for chunk in split_chunks(text)]
    merges = []
    while len(merges) < num_merges:
        counts = collections.Counter(pair for ids in chunks for pair in zip(ids, ids[1:]))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        chunks = [merge(ids, pair, 256 + len(merges)) for ids in chunks]
        merges.append(pair)
    return merges, [i for ids in chunks for i in ids]


def small_texts(rng):
    yield "aaaa"
    yield "aaaaaaa aaaa aaa baaab"  # overlapping pairs in runs of odd and even length
    yield "".join(rng.choice(list("aab b\n"), size=400))  # runs and many ties
    yield " ".join(rng.choice(["the", "then", "there", "ether", "a", "an", "'s"], size=150))  # repeated chunks
    yield "".join(rng.choice(list("abé😀 "), size=300))  # multi-byte characters
    yield random_unicode(rng, 120)


def test_incremental_training_gives_the_naive_merges_until_nothing_is_left(rng):
    for text in small_texts(rng):
        merges, final_ids = naive_bpe(text, 10 ** 9)
        assert len(merges) >= 2
        tok = BPETokenizer.train(text, 256 + len(merges))
        assert tok.merges == merges, text[:40]
        assert tok.encode(text) == final_ids  # encoding replays training exactly
        with pytest.raises(ValueError, match="too large"):
            BPETokenizer.train(text, 257 + len(merges))


def test_incremental_training_on_a_slice_of_the_corpus(train_text):
    text = train_text[:6000]
    merges, final_ids = naive_bpe(text, 120)
    tok = BPETokenizer.train(text, 256 + 120)
    assert tok.merges == merges
    assert tok.encode(text) == final_ids


# ---- files -------------------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path, rng, train_text):
    tok = BPETokenizer.train(train_text[:30000], 500)
    path = tmp_path / "bpe.json"
    tok.save(path)
    data = json.loads(path.read_text())  # plain JSON, merges as [a, b]
    assert data["format"] == "tinygrad_attn BPETokenizer 1" and data["merges"][0] == list(tok.merges[0])
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tok.merges and loaded.vocab == tok.vocab
    text = train_text[30000:40000] + random_unicode(rng, 100)
    assert loaded.encode(text) == tok.encode(text)
    BPETokenizer.train("abab", 257).save(path)  # overwrites
    assert BPETokenizer.load(path).merges == [(97, 98)]
    assert os.listdir(tmp_path) == ["bpe.json"]  # no temporary file left


def test_a_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "bpe.json"
    BPETokenizer.train("abab", 257).save(path)
    before = path.read_bytes()

    def fail(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        BPETokenizer.train("aaabdaaabac", 259).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["bpe.json"]


def _bpe_file(merges):
    return json.dumps({"format": "tinygrad_attn BPETokenizer 1", "merges": merges})


CORRUPT_FILES = [  # (content, what the message must say)
    (_bpe_file([[97, 97], [256, 98]])[:-5], r"not valid JSON \(truncated or corrupt\?\): .*\(line 1, column \d+\)"),
    ("", "not valid JSON"),
    ('["not", "an", "object"]', r"not a BPE tokenizer file: .*found 'list'"),
    ('{"format": "minbpe", "merges": []}', r"not a BPE tokenizer file: .*found 'minbpe'"),
    ('{"format": "tinygrad_attn BPETokenizer 1"}', r'"merges" must be a list of \[a, b\] id pairs, got None'),
    (_bpe_file("97 97"), r'"merges" must be a list'),
    (_bpe_file([[97, 97], ["a", 98]]), r"merge 1 must be a pair of integer ids, got \['a', 98\]"),
    (_bpe_file([[97, 97.0]]), r"merge 0 must be a pair of integer ids, got \[97, 97.0\]"),
    (_bpe_file([[97, True]]), r"merge 0 must be a pair of integer ids"),
    (_bpe_file([[97, 98, 99]]), r"merge 0 must be a pair of integer ids"),
    (_bpe_file([[97, 97], [256, 257]]), r"merge 1 is \(256, 257\), but it makes id 257, so it may only use ids "
                                        r"0..256"),
    (_bpe_file([[-1, 97]]), r"merge 0 is \(-1, 97\)"),
    (_bpe_file([[97, 98], [99, 100], [97, 98]]), r"merge 2 repeats merge 0, \(97, 98\)"),
]


@pytest.mark.parametrize("content, message", CORRUPT_FILES)
def test_a_corrupt_file_is_a_clear_error_naming_the_path(tmp_path, content, message):
    path = tmp_path / "tok.json"
    path.write_text(content)
    with pytest.raises(TokenizerError, match=message) as info:
        BPETokenizer.load(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)
    assert info.value.__context__ is None or info.value.__suppress_context__  # our message, not json's traceback


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        BPETokenizer.load(tmp_path / "nothing.json")


def test_a_binary_file_is_a_clear_error(tmp_path):
    path = tmp_path / "tok.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(TokenizerError, match="not UTF-8 text"):
        BPETokenizer.load(path)
