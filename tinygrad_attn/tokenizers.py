"""Tokenizers: text -> token ids -> text, by character, by word, and by byte-pair encoding.

A language model reads integers, so text has to become a sequence of ids from a fixed
vocabulary, and the model's output has to become text again. The three tokenizers trade the
size of the vocabulary against the length of the sequences:

    CharTokenizer   one id per distinct character of a training text: a tiny vocabulary, long
                    sequences, and a character it never saw cannot be encoded.
    WordTokenizer   one id per word or punctuation mark, as chapter 2 of Raschka's *Build a
                    Large Language Model (From Scratch)* builds it (SimpleTokenizerV1/V2):
                    short sequences, a large vocabulary, unknown words become <|unk|>.
    BPETokenizer    byte-level byte-pair encoding, as in GPT-2 and Karpathy's minbpe: any text
                    at all, in a vocabulary of the size you choose.

All three are built by `X.train(text, ...)` and have encode(text) -> list[int],
decode(ids) -> str and vocab_size.

Byte-pair encoding. Start from the UTF-8 bytes of the text, ids 0..255, so that every text
can be encoded. Then repeat: count every pair of adjacent ids, and replace each occurrence of
the most frequent pair, left to right, by a new id (256, 257, ...). Each merge adds one token
to the vocabulary and shortens the sequence. The list of merges is the tokenizer. Encoding a
new text replays the merges in the order they were learned; decoding joins the bytes of the
tokens. Wikipedia's example, three merges:

    a a a b d a a a b a c
    256 a b d 256 a b a c          aa -> 256
    256 257 d 256 257 a c          ab -> 257
    258 d 258 a c                  (256, 257) -> 258, i.e. "aaab"

How training is organised:
- Chunks. The text is first cut into chunks with GPT-2's pattern (SPLIT_PATTERN: a word with
  its leading space, a number, a run of punctuation, whitespace), and pairs are counted inside
  chunks only, so a token never spans two words. A chunk that occurs n times is stored once
  and counted with weight n: the 465 KB corpus of text.py has 103,000 chunks, 6,000 distinct.
- Ties. Of equally frequent pairs, the smallest (a, b) wins, comparing the ids as tuples. In
  the example, after the first merge (256, 97) and (97, 98) both occur twice: (97, 98) wins,
  Wikipedia's choice. (minbpe takes the pair it counted first, (256, 97); it reaches the same
  encoding, 258 100 258 97 99, through other merges.)
- Incremental counts. Recounting every pair after every merge reads the whole text once per
  merge. Instead the counts are kept up to date: an index says which chunks contain a pair;
  a merge re-merges only those chunks and adds the difference between their old and new pairs
  to the counts. A heap holds (-count, pair) and gives the next pair to merge; when a count
  changes the new entry is pushed and the old one is left in place, to be skipped when it
  comes to the top because it no longer matches the count (lazy deletion).
"""

import collections
import heapq
import json
import math
import re

from .checkpoint import write_json

UNK, ENDOFTEXT = "<|unk|>", "<|endoftext|>"
# GPT-2's pattern, in the standard library's re, which has no \p{L}: [^\W\d_] is a letter, \d
# a digit, and (?:[^\s\w]|_) anything else that is not whitespace. Every character matches
# one branch, so the chunks of a text always join up to the text again.
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
_SPLIT = re.compile(SPLIT_PATTERN)
# The book's regular expressions: split off punctuation, "--" and whitespace; on decoding,
# remove the space that joining put before punctuation.
_WORD_SPLIT = re.compile(r'([,.:;?_!"()\']|--|\s)')
_SPACE_BEFORE_PUNCTUATION = re.compile(r'\s+([,.?!"()\'])')
BPE_FORMAT = "tinygrad_attn BPETokenizer 1"
_SHOWN = 5  # unknown characters or words named in an error message


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used: names the path and what is wrong with it."""


def _check_text(text):
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")


def _check_ids(ids, vocab_size):
    """The ids as a list, or ValueError naming the first one outside 0..vocab_size-1."""
    ids = list(ids)
    for position, i in enumerate(ids):
        if not 0 <= i < vocab_size:
            raise ValueError(f"id {i} at position {position} is outside the vocabulary 0..{vocab_size - 1}")
    return ids


class CharTokenizer:
    """One id per character: the distinct characters of the training text, sorted."""

    def __init__(self, chars):
        """chars: the vocabulary in id order, distinct single characters (a str or a list)."""
        self.itos = list(chars)
        if not self.itos:
            raise ValueError("a character vocabulary needs at least one character")
        bad = [c for c in self.itos if not (isinstance(c, str) and len(c) == 1)]
        if bad:
            raise ValueError(f"the vocabulary must hold single characters, got {bad[0]!r}")
        if len(set(self.itos)) != len(self.itos):
            repeated = sorted(c for c, n in collections.Counter(self.itos).items() if n > 1)
            raise ValueError(f"characters repeated in the vocabulary: {repeated}")
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def train(cls, text):
        """The tokenizer of text's distinct characters, in sorted (code point) order."""
        _check_text(text)
        if not text:
            raise ValueError("cannot build a character vocabulary from an empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.itos)

    def encode(self, text):
        """Token ids of text, one per character; ValueError naming characters it was not trained on."""
        _check_text(text)
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = [(i, c) for i, c in enumerate(text) if c not in self.stoi]
            shown = ", ".join(f"{c!r} (U+{ord(c):04X}) at position {i}" for i, c in unknown[:_SHOWN])
            more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
            raise ValueError(f"{len(unknown)} {'character is' if len(unknown) == 1 else 'characters are'} not in the "
                             f"vocabulary of {self.vocab_size}: "
                             f"{shown}{more}; train the tokenizer on a text that contains them") from None

    def decode(self, ids):
        """The text of token ids."""
        return "".join(self.itos[i] for i in _check_ids(ids, self.vocab_size))


def split_words(text):
    """The book's preprocessing: words and punctuation, whitespace dropped.

    split_words("Hello, world. Is this-- a test?") ==
        ["Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?"]
    """
    _check_text(text)
    return [item.strip() for item in _WORD_SPLIT.split(text) if item.strip()]


class WordTokenizer:
    """One id per word or punctuation mark: the book's SimpleTokenizerV1, or V2 with <|unk|>.

    With "<|unk|>" in the vocabulary (V2) an unknown word encodes as <|unk|>; without it (V1)
    it is a ValueError. decode joins the tokens with spaces and removes the space before
    , . ? ! " ( ) and ': the original whitespace is lost, and an opening quote or parenthesis
    sticks to the word before it, as in the book.
    """

    def __init__(self, vocab):
        """vocab: {token: id} with the ids 0..len(vocab)-1, as the book's `vocab`."""
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError(f"the ids of a vocabulary of {len(vocab)} tokens must be 0..{len(vocab) - 1}, each "
                             "once")
        self.str_to_int = dict(vocab)
        self.int_to_str = {i: s for s, i in vocab.items()}

    @classmethod
    def train(cls, text, special_tokens=()):
        """The vocabulary of text's words, sorted, then the special tokens in the order given.

        special_tokens=("<|endoftext|>", "<|unk|>") is the book's SimpleTokenizerV2.
        """
        special_tokens = list(special_tokens)
        for token in special_tokens:
            if split_words(token) != [token]:
                raise ValueError(f"special token {token!r} would be split into {split_words(token)} by the word "
                                 "pattern, so it could never be encoded")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special tokens repeated: {special_tokens}")
        words = sorted(set(split_words(text)) - set(special_tokens))
        if not words:
            raise ValueError(f"no words to build a vocabulary from in {text[:50]!r}")
        return cls({token: i for i, token in enumerate(words + special_tokens)})

    @property
    def vocab_size(self):
        return len(self.str_to_int)

    def encode(self, text):
        """Token ids of text's words; unknown words are <|unk|>, or a ValueError naming them."""
        words = split_words(text)
        if UNK in self.str_to_int:
            words = [w if w in self.str_to_int else UNK for w in words]
        unknown = list(dict.fromkeys(w for w in words if w not in self.str_to_int))
        if unknown:
            more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
            raise ValueError(f"words not in the vocabulary: {', '.join(map(repr, unknown[:_SHOWN]))}{more}; train on a "
                             f"text that contains them, or add the special token {UNK!r} to encode them as unknown")
        return [self.str_to_int[w] for w in words]

    def decode(self, ids):
        """The tokens joined by spaces, without the space before punctuation."""
        text = " ".join(self.int_to_str[i] for i in _check_ids(ids, self.vocab_size))
        return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)


def split_chunks(text):
    """The chunks BPE works inside (SPLIT_PATTERN); "".join(split_chunks(text)) == text.

    split_chunks("Hello world's  2024!") == ["Hello", " world", "'s", " ", " 2024", "!"]
    """
    return _SPLIT.findall(text)


def merge(ids, pair, new_id):
    """ids with each occurrence of pair, taken left to right, replaced by new_id.

    merge([1, 2, 1, 2, 3], (1, 2), 9) == [9, 9, 3]; merge([1, 1, 1], (1, 1), 9) == [9, 1].
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """Byte-level BPE: ids 0..255 are the bytes, merge i makes id 256 + i from a pair of ids."""

    def __init__(self, merges):
        """merges: pairs (a, b) in the order learned; each may use the bytes and earlier merges' ids."""
        self.merges = []
        self.ranks = {}  # (a, b) -> the id it merges into; a lower id was learned earlier
        self.vocab = [bytes([b]) for b in range(256)]  # id -> the bytes it stands for
        for i, pair in enumerate(merges):
            new_id = 256 + i
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)):
                raise TypeError(f"merge {i} must be a pair of integer ids, got {pair!r}")
            a, b = pair
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {i} is ({a}, {b}), but it makes id {new_id}, so it may only use ids "
                                 f"0..{new_id - 1}: the bytes and the ids of the merges before it")
            if (a, b) in self.ranks:
                raise ValueError(f"merge {i} repeats merge {self.ranks[a, b] - 256}, ({a}, {b})")
            self.merges.append((a, b))
            self.ranks[a, b] = new_id
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self._chunk_ids = {}  # chunk -> its ids: text repeats its words, so encode each distinct one once

    @property
    def vocab_size(self):
        return 256 + len(self.merges)

    @classmethod
    def train(cls, text, vocab_size):
        """Learn vocab_size - 256 merges from text; see the module docstring for how."""
        _check_text(text)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256:
            raise ValueError(f"vocab_size must be an integer >= 256 (the byte tokens), got {vocab_size!r}")
        if not text:
            raise ValueError("cannot train a BPE tokenizer on an empty text")
        chunk_counts = collections.Counter(split_chunks(text))
        chunks = [list(chunk.encode("utf-8")) for chunk in chunk_counts]  # the current ids of each distinct chunk
        weights = list(chunk_counts.values())  # how often each occurs in the text
        pair_counts = collections.Counter()  # (a, b) -> occurrences in the whole text
        chunks_with = collections.defaultdict(set)  # (a, b) -> the chunks it occurs in, and some it no longer does
        for c, ids in enumerate(chunks):
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += weights[c]
                chunks_with[pair].add(c)
        heap = [(-n, pair) for pair, n in pair_counts.items()]  # the top is the most frequent, then smallest, pair
        heapq.heapify(heap)

        merges = []
        while len(merges) < vocab_size - 256:
            while heap and pair_counts.get(heap[0][1]) != -heap[0][0]:
                heapq.heappop(heap)  # an out-of-date count: the pair's current count has its own entry
            if not heap:
                raise ValueError(f"vocab_size={vocab_size} is too large for this text: after {len(merges)} merges "
                                 f"each chunk is one token, so at most vocab_size={256 + len(merges)}")
            pair = heapq.heappop(heap)[1]
            new_id = 256 + len(merges)
            merges.append(pair)
            change = collections.Counter()  # pair -> change in its count from this merge
            for c in sorted(chunks_with.pop(pair)):
                old, new = chunks[c], merge(chunks[c], pair, new_id)
                if len(new) == len(old):
                    continue  # an earlier merge already took the pair out of this chunk
                for p in zip(old, old[1:]):
                    change[p] -= weights[c]
                for p in zip(new, new[1:]):
                    change[p] += weights[c]
                    chunks_with[p].add(c)
                chunks[c] = new
            for p, delta in change.items():
                if delta:  # 0 for a pair both before and after the merge: its count and heap entry stand
                    pair_counts[p] += delta
                    if pair_counts[p]:
                        heapq.heappush(heap, (-pair_counts[p], p))
                    else:
                        del pair_counts[p]
        return cls(merges)

    def _encode_chunk(self, chunk):
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            # replay the merges in training order: the pair here that was learned first
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, math.inf))
            if pair not in self.ranks:
                break
            ids = merge(ids, pair, self.ranks[pair])
        return ids

    def encode(self, text):
        """Token ids of any text (a str whose characters are valid Unicode: no lone surrogates)."""
        _check_text(text)
        ids = []
        for chunk in split_chunks(text):
            if chunk not in self._chunk_ids:
                self._chunk_ids[chunk] = self._encode_chunk(chunk)
            ids.extend(self._chunk_ids[chunk])
        return ids

    def decode(self, ids):
        """The text of token ids. Ids that cut a UTF-8 character leave bytes that decode to U+FFFD
        (errors="replace", as minbpe): decode(encode(s)) == s always, but not every id sequence is a text."""
        return b"".join(self.vocab[i] for i in _check_ids(ids, self.vocab_size)).decode("utf-8", errors="replace")

    def save(self, path):
        """Write the merges to path as JSON, atomically (a temporary file, then os.replace)."""
        write_json(path, {"format": BPE_FORMAT, "merges": [list(pair) for pair in self.merges]})

    @classmethod
    def load(cls, path):
        """The tokenizer saved at path; TokenizerError naming the path if the file is not a valid one
        (a missing file is open()'s FileNotFoundError, which names it too)."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except UnicodeDecodeError:
            raise TokenizerError(f"{path} is not a tokenizer file: it is not UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise TokenizerError(f"{path} is not valid JSON (truncated or corrupt?): {e.msg} (line {e.lineno}, "
                                 f"column {e.colno})") from None
        if not isinstance(data, dict) or data.get("format") != BPE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise TokenizerError(f"{path} is not a BPE tokenizer file: expected a JSON object with "
                                 f'"format": "{BPE_FORMAT}", found {found!r}')
        if not isinstance(data.get("merges"), list):
            raise TokenizerError(f'{path}: "merges" must be a list of [a, b] id pairs, got {data.get("merges")!r:.80}')
        try:
            return cls(data["merges"])
        except (TypeError, ValueError) as e:
            raise TokenizerError(f"{path}: {e}") from None
