"""The copy task: read some random symbols and a separator, then write the symbols again.

It is the smallest task that needs attention: to write the j-th symbol the model must look
back to the j-th position of the prompt, so a model without it cannot do better than chance.
task="reverse" asks for the symbols in reverse order.

Token ids (vocab_size = num_symbols + 2):

    0         PAD    left padding, never attended to, never a target
    1         SEP    ends the prompt
    2 ...     the symbols: symbol s (0 <= s < num_symbols) is token s + 2

An example with symbols 3 1 4 (length L = 3) is the 2L + 1 tokens `5 3 6 SEP 5 3 6`. The
model reads all but the last and predicts the next token at every position; only the
answer is trained, from the prediction made at SEP on, the prompt's targets being
ignore_index (-100, F.cross_entropy's default):

    idx       5     3     6     SEP   5     3
    targets   -100  -100  -100  5     3     6

Examples of different lengths are batched with LEFT padding, so every row ends at the last
column and generation can append to all rows at once; attention_mask is 1 on real tokens.

Held-out split: a symbol sequence is held out when a hash of it falls in the lowest
`heldout_fraction` of the hash range. The hash depends on the symbols only (not on the
seed or the task), and the training sampler rejects held-out sequences, so the model is
never trained on a sequence it is evaluated on. A task with too few distinct sequences for
both sides of the split (1 symbol, say) is refused when it is made.

Everything here is numpy; randomness comes from a numpy Generator the caller passes in.
"""

import hashlib
import itertools

import numpy as np

PAD, SEP, FIRST_SYMBOL = 0, 1, 2
IGNORE_INDEX = -100
TASKS = ("copy", "reverse")
_MAX_DRAWS = 1000  # draws per example before deciding one side of the split is (nearly) empty
# Each side of the split must get at least this share of random draws: then _MAX_DRAWS draws all
# miss it with a probability below (1 - 0.03) ** 1000 < 1e-13.
_MIN_SHARE = 0.03
_COUNTED = 4096  # lengths with at most this many sequences have their held-out share counted exactly


class CopyTask:
    """Random symbol sequences of length min_len..max_len (uniform), to copy or to reverse."""

    def __init__(self, num_symbols=10, min_len=8, max_len=None, task="copy", heldout_fraction=0.1):
        max_len = min_len if max_len is None else max_len
        if num_symbols < 1:
            raise ValueError(f"num_symbols={num_symbols} must be >= 1")
        if min_len < 1:
            raise ValueError(f"min_len={min_len} must be >= 1")
        if max_len < min_len:
            raise ValueError(f"max_len={max_len} is shorter than min_len={min_len}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if not _MIN_SHARE <= heldout_fraction <= 1 - _MIN_SHARE:
            raise ValueError(f"heldout_fraction must be in [{_MIN_SHARE}, {1 - _MIN_SHARE}], got {heldout_fraction}")
        self.num_symbols, self.min_len, self.max_len = num_symbols, min_len, max_len
        self.task, self.heldout_fraction = task, heldout_fraction
        share = self.heldout_share()
        if not _MIN_SHARE <= share <= 1 - _MIN_SHARE:
            raise ValueError(f"num_symbols={num_symbols}, min_len={min_len}, max_len={max_len} give too few distinct "
                             f"sequences to hold {heldout_fraction:.0%} of them out ({share:.1%} of random draws "
                             "would be): use more symbols or longer sequences")

    @property
    def vocab_size(self):
        return self.num_symbols + FIRST_SYMBOL

    def summary(self):
        """The task in a few words, for the start of a run."""
        return f"{self.task} task: {self.num_symbols} symbols, lengths {self.min_len}..{self.max_len}"

    def token_labels(self, ids):
        """Token ids as the symbols a user types, with PAD and SEP named (the labels of a heatmap)."""
        return ["PAD" if t == PAD else "SEP" if t == SEP else str(t - FIRST_SYMBOL) for t in ids]

    @property
    def context_length(self):
        """Positions the longest example needs: 2 * max_len + 1.

        Training reads 2 * max_len tokens (the last one is never input); generating the answer
        with a KV cache holds the prompt (max_len + 1) plus the max_len answer tokens.
        """
        return 2 * self.max_len + 1

    def answer(self, symbols):
        """What the model should write for `symbols`: the same symbols, or reversed."""
        symbols = np.asarray(symbols)
        return symbols[::-1] if self.task == "reverse" else symbols

    def is_heldout(self, symbols):
        """True if this symbol sequence belongs to the held-out split (a stable hash decides)."""
        digest = hashlib.blake2b(np.asarray(symbols, dtype=np.int64).tobytes(), digest_size=8).digest()
        return int.from_bytes(digest, "little") < self.heldout_fraction * 2 ** 64

    def heldout_share(self):
        """The chance that a random draw (a uniform length, then uniform symbols) is held out.

        Counted sequence by sequence for the lengths that have at most 4096 sequences; for the
        others it is heldout_fraction, the hash spreading that many sequences evenly.
        """
        lengths = range(self.min_len, self.max_len + 1)
        counted = [L for L in lengths[:_COUNTED] if self.num_symbols ** min(L, 13) <= _COUNTED]  # 2**13 > 4096
        shares = [np.mean([self.is_heldout(s) for s in itertools.product(range(self.num_symbols), repeat=L)])
                  for L in counted]
        return float(sum(shares) + (len(lengths) - len(counted)) * self.heldout_fraction) / len(lengths)

    def split_of(self, symbols):
        """Which data `symbols` is to this task, as sample and pictures label it."""
        if not self.min_len <= len(symbols) <= self.max_len:
            return f"length {len(symbols)}: outside the trained lengths {self.min_len}..{self.max_len}"
        return "held out: never trained on" if self.is_heldout(symbols) else "training split"

    def sample(self, rng, n, split="train"):
        """n random symbol sequences (1-d int64 arrays) from the 'train' or the 'heldout' split."""
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        want_heldout = split == "heldout"
        sequences = []
        for _ in range(n):
            for _ in range(_MAX_DRAWS):
                length = rng.integers(self.min_len, self.max_len + 1)
                symbols = rng.integers(0, self.num_symbols, size=length)
                if self.is_heldout(symbols) == want_heldout:
                    break
            else:
                raise ValueError(f"{_MAX_DRAWS} random sequences of {self.num_symbols} symbols and length "
                                 f"{self.min_len}..{self.max_len} all fell outside the {split} split: there are "
                                 f"too few distinct sequences; use longer sequences or more symbols")
            sequences.append(symbols)
        return sequences

    def heldout_set(self, rng, n):
        """Up to n distinct held-out sequences (fewer only when the held-out split is that small)."""
        distinct = {}
        for symbols in self.sample(rng, n, "heldout"):
            distinct.setdefault(tuple(symbols), symbols)
        return list(distinct.values())

    def batch(self, sequences):
        """Training arrays for symbol sequences, left-padded to T = 2 * the longest length.

        Returns int64 numpy arrays idx (B, T), targets (B, T) and attention_mask (B, T):
        targets are the next tokens on the answer and IGNORE_INDEX elsewhere (prompt, padding).
        """
        T = 2 * max(len(s) for s in sequences)
        idx = np.full((len(sequences), T), PAD, dtype=np.int64)
        targets = np.full((len(sequences), T), IGNORE_INDEX, dtype=np.int64)
        mask = np.zeros((len(sequences), T), dtype=np.int64)
        for b, symbols in enumerate(sequences):
            L = len(symbols)
            tokens = np.concatenate([symbols + FIRST_SYMBOL, [SEP], self.answer(symbols) + FIRST_SYMBOL])  # (2L+1,)
            idx[b, T - 2 * L:] = tokens[:-1]
            targets[b, T - L:] = tokens[L + 1:]  # the inputs from SEP on predict the answer
            mask[b, T - 2 * L:] = 1
        return idx, targets, mask

    def get_batch(self, rng, batch_size):
        """A random training batch: batch(sample(rng, batch_size, 'train'))."""
        return self.batch(self.sample(rng, batch_size, "train"))

    def prompts(self, sequences):
        """The prompts (symbols then SEP) for generation, left-padded to P = the longest length + 1.

        Returns int64 numpy arrays idx (B, P) and attention_mask (B, P).
        """
        P = max(len(s) for s in sequences) + 1
        idx = np.full((len(sequences), P), PAD, dtype=np.int64)
        mask = np.zeros((len(sequences), P), dtype=np.int64)
        for b, symbols in enumerate(sequences):
            idx[b, P - len(symbols) - 1:] = np.append(symbols + FIRST_SYMBOL, SEP)
            mask[b, P - len(symbols) - 1:] = 1
        return idx, mask

    def parse(self, text, context_length=None):
        """Symbols from a string like "3 1 4 1 5".

        ValueError naming the symbol outside 0..num_symbols-1, or, given a model's
        context_length, the length whose prompt and answer (2 * length + 1 tokens) do not fit.
        """
        try:
            values = [int(tok) for tok in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"symbols must be integers separated by spaces, got {text!r}") from None
        if not values:
            raise ValueError("no symbols given")
        bad = [v for v in values if not 0 <= v < self.num_symbols]  # checked as Python ints: none overflows
        if bad:
            raise ValueError(f"symbol {bad[0]} is outside the vocabulary: symbols are 0..{self.num_symbols - 1}")
        symbols = np.array(values, dtype=np.int64)
        if context_length is not None and 2 * symbols.size + 1 > context_length:
            raise ValueError(f"{symbols.size} symbols need a context of {2 * symbols.size + 1} tokens (prompt and "
                             f"answer), but this model's is {context_length}: at most {(context_length - 1) // 2} "
                             "symbols")
        return symbols


def format_symbols(symbols):
    """ "3 1 4" for the symbols [3, 1, 4]; "?" for -1, which decode_answer gives for a non-symbol."""
    return " ".join("?" if s < 0 else str(int(s)) for s in symbols)


def decode_answer(tokens, length):
    """The first `length` generated tokens as symbols (PAD and SEP become -1: never a correct symbol)."""
    tokens = np.asarray(tokens[:length], dtype=np.int64)
    return np.where(tokens >= FIRST_SYMBOL, tokens - FIRST_SYMBOL, -1)
