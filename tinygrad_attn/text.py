"""Text for a language model: a corpus that ships with Python, and its held-out split.

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
"""

import hashlib

SEPARATOR = "\n<|endoftext|>\n"


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
    """The names of the held-out documents, sorted: the first in hash order holding heldout_fraction
    of the characters (at least one document, and never all of them)."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    if len(documents) < 2:
        raise ValueError(f"a split by document needs at least 2 documents, got {len(documents)}")
    total, held, names = sum(map(len, documents.values())), 0, []
    for name in sorted(documents, key=_name_hash)[:-1]:
        if held >= heldout_fraction * total:
            break
        names.append(name)
        held += len(documents[name])
    return sorted(names)


def split_corpus(documents, heldout_fraction=0.1):
    """(train_text, heldout_text): each side's documents in name order, joined by SEPARATOR."""
    heldout = set(heldout_names(documents, heldout_fraction))
    return (SEPARATOR.join(text for name, text in documents.items() if name not in heldout),
            SEPARATOR.join(text for name, text in documents.items() if name in heldout))
