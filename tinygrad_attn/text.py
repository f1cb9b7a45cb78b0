"""Text for a language model: a corpus that ships with Python, its held-out split, training
windows, and the count-based baselines a model's loss should beat.

The corpus. CPython's standard library carries the text of its own documentation topics,
`pydoc_data.topics.topics`, for help(): 79 topics ("assert", "compound", "formatstrings",
...), about 465 KB of English about Python (CPython 3.11). Every machine that runs this code
has the same corpus, offline. Documents are joined by SEPARATOR, the book's <|endoftext|>
on a line of its own; the topics contain blank lines themselves, so a blank line would not
mark where one ends.

The split is by document: whole topics are held out, so the held-out loss measures text the
model never saw, not the other half of a page it trained on. The topics are put in the
order of a stable hash of their name (blake2b, as data.py), and the first ones in that order
are held out until they hold `heldout_fraction` of the characters. A threshold on the hash
alone, as data.py uses for its many short sequences, would hold out 26% of the characters
here instead of 10%: two of the largest topics fall below it.

The windows are the book's GPTDatasetV1: inputs ids[i:i + context_length] and targets the
same window shifted by one, for i = 0, stride, 2 * stride, ...

The baselines: a unigram model (each token by its frequency) and a bigram model (each token
given the one before), fitted by counting the training ids, scored on the held-out ids in
nats per token, as cross-entropy scores a model. nats_per_char() puts tokenizers with
different vocabularies on one scale.
"""

import collections
import functools
import hashlib
import math

import numpy as np

from .tokenizers import BPETokenizer, CharTokenizer, TokenizerError

SEPARATOR = "\n<|endoftext|>\n"
PASSAGE, MAX_QUOTED = 64, 0.01  # a document with 1% of its 64-character passages in another is not held out


def load_corpus():
    """The pydoc topics: {topic name: text}, sorted by name."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise RuntimeError("the corpus is the standard library's pydoc_data.topics module, and this Python has none "
                           "(some distributions strip it); use a Python with the full standard library, such as a "
                           "python.org, pyenv or conda build, or your distribution's full python3 package") from None
    return {name: topics[name] for name in sorted(topics)}


def _name_hash(name):
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


def heldout_names(documents, heldout_fraction=0.1):
    """The names of the held-out documents, sorted: the first in hash order, among the documents
    that quote no other (quoted_shares below MAX_QUOTED), holding heldout_fraction of the
    characters (at least one document, and never all of them).

    pydoc's topics quote each other: "compound" holds "if", "for", "while", ... verbatim, and
    "augassign" is a section of "assignment". A held-out document with passages the training
    text holds would measure memory, not modelling; so only documents none of whose passages
    occur in another document may be held out.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    if len(documents) < 2:
        raise ValueError(f"a split by document needs at least 2 documents, got {len(documents)}")
    shares = quoted_shares(tuple(documents.items()))
    own = [name for name in sorted(documents, key=_name_hash) if shares[name] < MAX_QUOTED]
    if not own:
        raise ValueError(f"every document shares passages of {PASSAGE} characters with another: none can be held "
                         "out without its text in the training split")
    total, held, names = sum(map(len, documents.values())), 0, []
    for name in own[:len(documents) - 1]:
        if held >= heldout_fraction * total:
            break
        names.append(name)
        held += len(documents[name])
    return sorted(names)


@functools.lru_cache(maxsize=4)
def quoted_shares(items):
    """{name: the share of a document's PASSAGE-character passages that occur in another document too},
    for items, a tuple of (name, text) pairs (a tuple, so that the corpus is counted once)."""
    passages = {name: {text[i:i + PASSAGE] for i in range(max(1, len(text) - PASSAGE + 1))} for name, text in items}
    documents_with = collections.Counter(p for ps in passages.values() for p in ps)
    return {name: sum(documents_with[p] > 1 for p in ps) / len(ps) for name, ps in passages.items()}


def split_corpus(documents, heldout_fraction=0.1):
    """(train_text, heldout_text): each side's documents in name order, joined by SEPARATOR."""
    heldout = set(heldout_names(documents, heldout_fraction))
    return (SEPARATOR.join(text for name, text in documents.items() if name not in heldout),
            SEPARATOR.join(text for name, text in documents.items() if name in heldout))


class TextDataset:
    """Windows of token ids: inputs ids[i:i + T] and targets ids[i + 1:i + T + 1], T = context_length,
    for i in range(0, len(ids) - T, stride), as the book's GPTDatasetV1: every start whose window
    and shifted targets fit (the last target of the last window is at most ids[-1]).

    stride = context_length tiles the text (each token is a target at most once, the evaluation
    setting); a smaller stride overlaps the windows.
    """

    def __init__(self, ids, context_length, stride):
        self.ids = np.asarray(ids, dtype=np.int64)
        if self.ids.ndim != 1:
            raise ValueError(f"ids must be a 1-d sequence of token ids, got shape {self.ids.shape}")
        if context_length < 1 or stride < 1:
            raise ValueError(f"context_length and stride must be >= 1, got context_length={context_length}, "
                             f"stride={stride}")
        if len(self.ids) < context_length + 1:
            raise ValueError(f"{len(self.ids)} tokens are too few for one window: context_length={context_length} "
                             f"needs {context_length + 1} (the targets are the inputs shifted by one)")
        self.context_length, self.stride = context_length, stride
        self.starts = np.arange(0, len(self.ids) - context_length, stride)  # (N,) where each window begins

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        """(inputs (T,), targets (T,)) of window i, int64."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} of a dataset of {len(self)} windows")
        s = self.starts[i]
        return self.ids[s:s + self.context_length], self.ids[s + 1:s + self.context_length + 1]

    def _windows(self, starts):
        rows = self.ids[starts[:, None] + np.arange(self.context_length + 1)]  # (B, T + 1)
        return rows[:, :-1], rows[:, 1:]

    def get_batch(self, rng, batch_size):
        """(idx (B, T), targets (B, T)) int64: batch_size windows drawn uniformly, with replacement, by rng."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self._windows(self.starts[rng.integers(0, len(self), size=batch_size)])

    def batches(self, batch_size):
        """Every window once, in order, as (idx (B, T), targets (B, T)); the last batch may be smaller."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for first in range(0, len(self), batch_size):
            yield self._windows(self.starts[first:first + batch_size])


def _as_ids(ids, vocab_size, name, at_least):
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) < at_least:
        raise ValueError(f"{name} must be a 1-d sequence of at least {at_least} ids, got shape {ids.shape}")
    bad = ids[(ids < 0) | (ids >= vocab_size)]
    if bad.size:
        raise ValueError(f"{name} holds id {bad[0]}, outside the vocabulary 0..{vocab_size - 1}")
    return ids


def _check_k(k):
    if not k > 0:
        raise ValueError(f"the add-k smoothing constant must be > 0 (unseen tokens get a finite loss), got {k}")


def _unigram_log_probs(train, vocab_size, k):
    """(V,) log p(token) = log (count + k) / (N + k V)."""
    counts = np.bincount(train, minlength=vocab_size) + k
    return np.log(counts) - np.log(counts.sum())


def unigram_loss(train_ids, heldout_ids, vocab_size, k=1.0):
    """Mean negative log-likelihood (nats per token) of heldout_ids under add-k token frequencies of train_ids.

    k = 1 (Laplace): with a few hundred thousand training tokens, the choice of k barely matters here.
    """
    _check_k(k)
    train = _as_ids(train_ids, vocab_size, "train_ids", 1)
    heldout = _as_ids(heldout_ids, vocab_size, "heldout_ids", 1)
    return float(-_unigram_log_probs(train, vocab_size, k)[heldout].mean())


def bigram_loss(train_ids, heldout_ids, vocab_size, k=0.01):
    """Mean negative log-likelihood (nats per token) of heldout_ids under add-k bigram counts of train_ids.

    p(b | a) = (count(a, b) + k) / (count(a, .) + k V). The first held-out token has no token
    before it and is scored by the add-k unigram. Add-1 spreads far too much probability over the
    V^2 pairs, most never seen. k = 0.01 was chosen on the training topics alone (split again
    by heldout_names): of k = 1, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001 it was the best for BPE-1000
    tokens (3.69 nats/token; k = 1 gives 4.84) and within 0.001 of the best, k = 0.03, for
    characters.
    """
    _check_k(k)
    train = _as_ids(train_ids, vocab_size, "train_ids", 2)
    heldout = _as_ids(heldout_ids, vocab_size, "heldout_ids", 1)
    prev, nxt = heldout[:-1], heldout[1:]
    # count(a, b) of the held-out pairs, looked up among the distinct training pairs coded as a * V + b
    codes, counts = np.unique(train[:-1] * vocab_size + train[1:], return_counts=True)
    query = prev * vocab_size + nxt
    at = np.minimum(np.searchsorted(codes, query), len(codes) - 1)
    pair_counts = np.where(codes[at] == query, counts[at], 0)
    prev_counts = np.bincount(train[:-1], minlength=vocab_size)[prev]  # count(a, .)
    log_probs = np.log(pair_counts + k) - np.log(prev_counts + k * vocab_size)
    first = _unigram_log_probs(train, vocab_size, k)[heldout[0]]
    return float(-(first + log_probs.sum()) / len(heldout))


def nats_per_char(nats_per_token, num_tokens, num_chars):
    """A loss per token as a loss per character of the same text: the total, spread over the characters."""
    return nats_per_token * num_tokens / num_chars


def perplexity(nats):
    """exp(loss): the number of equally likely choices that would give the same loss."""
    return math.exp(nats)


TOKENIZERS = ("char", "bpe")


def train_tokenizer(kind, train_text, heldout_text, vocab_size=1000):
    """The tokenizer a text run uses: "char", every character of the corpus (the held-out
    documents' too: an alphabet is no peek at the text, and a character the model never trained
    on would otherwise stop the evaluation), or "bpe", byte-level BPE merges learned on the
    training documents only, to vocab_size tokens."""
    if kind == "char":
        return CharTokenizer.train(train_text + heldout_text)
    if kind == "bpe":
        return BPETokenizer.train(train_text, vocab_size)
    raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {kind!r}")


def tokenizer_state(tokenizer):
    """What rebuilds the tokenizer, as JSON-able data: its characters, or its merges."""
    if isinstance(tokenizer, CharTokenizer):
        return {"kind": "char", "chars": "".join(tokenizer.itos)}
    return {"kind": "bpe", "merges": [list(pair) for pair in tokenizer.merges]}


def tokenizer_from_state(state):
    """The tokenizer tokenizer_state() describes; ValueError (TokenizerError) if the state is malformed."""
    if not isinstance(state, dict) or state.get("kind") not in TOKENIZERS:
        raise TokenizerError(f"a tokenizer state is {{'kind': 'char' or 'bpe', ...}}, got {str(state)[:80]}")
    try:
        if state["kind"] == "char":
            return CharTokenizer(state["chars"])
        return BPETokenizer([tuple(pair) for pair in state["merges"]])
    except (KeyError, TypeError) as e:
        raise TokenizerError(f"a {state['kind']} tokenizer state is missing or has a malformed field: {e}") from None


class TextTask:
    """Language modelling on the corpus, for the training loop: predict every next token.

    tokenizer: a trained tokenizer (train_tokenizer). The training documents become one id
    sequence cut into windows of context_length tokens every `stride` (default context_length // 2),
    drawn at random for each batch; the held-out documents are tiled by windows (stride =
    context_length), so each held-out token is scored once. Losses are in nats per token;
    chars_per_token converts them to nats per character, the scale on which tokenizers compare.
    The corpus is encoded when first needed, so that a run's model writes with its tokenizer
    on a Python whose documentation holds characters that tokenizer never saw.
    """

    def __init__(self, tokenizer, context_length, stride=None, heldout_fraction=0.1):
        self.tokenizer, self.context_length = tokenizer, context_length
        self.stride, self.heldout_fraction = stride or max(1, context_length // 2), heldout_fraction

    @functools.cached_property
    def _ids(self):
        """(training ids, held-out ids, held-out characters): the corpus encoded once."""
        train_text, heldout_text = split_corpus(load_corpus(), self.heldout_fraction)
        encode = self.tokenizer.encode
        return np.array(encode(train_text), dtype=np.int64), np.array(encode(heldout_text), dtype=np.int64), \
            len(heldout_text)

    train_ids = property(lambda self: self._ids[0], doc="the training documents as token ids")
    heldout_ids = property(lambda self: self._ids[1], doc="the held-out documents as token ids")
    chars_per_token = property(lambda self: self._ids[2] / len(self._ids[1]), doc="held-out characters per token")

    @functools.cached_property
    def train(self):
        return TextDataset(self.train_ids, self.context_length, self.stride)

    @functools.cached_property
    def heldout(self):
        return TextDataset(self.heldout_ids, self.context_length, self.context_length)

    @property
    def vocab_size(self):
        return self.tokenizer.vocab_size

    def summary(self):
        """The task in a few words, for the start of a run."""
        kind = "char" if isinstance(self.tokenizer, CharTokenizer) else "bpe"
        return (f"text task: {kind} tokenizer, {self.vocab_size} tokens; {len(self.train_ids):,} training, "
                f"{len(self.heldout_ids):,} held-out")

    def token_labels(self, ids):
        """Each token as text (the labels of a heatmap), whitespace made visible."""
        return [self.tokenizer.decode([int(t)]).replace(" ", "␣").replace("\n", "⏎") for t in ids]

    def get_batch(self, rng, batch_size):
        """A random training batch: idx (B, T), targets (B, T), int64, every target counted, and no padding."""
        return (*self.train.get_batch(rng, batch_size), None)

    def baselines(self):
        """Held-out nats per token of the count models fitted on the training ids: {'unigram', 'bigram'}."""
        return {"unigram": unigram_loss(self.train_ids, self.heldout_ids, self.vocab_size),
                "bigram": bigram_loss(self.train_ids, self.heldout_ids, self.vocab_size)}
