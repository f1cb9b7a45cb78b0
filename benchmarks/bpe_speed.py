"""How fast does BPETokenizer train and encode, and what do the count-based baselines score?

Times training on the whole pydoc corpus (text.load_corpus, every topic) to a vocabulary of
1000 and encoding the corpus with it, best of a few runs, and prints the compression. Then,
with tokenizers trained on the training topics only, the held-out unigram and bigram losses
for characters and for BPE, the bar a model's held-out loss should clear.

    python -m benchmarks.bpe_speed                   vocab 1000, best of 3
    python -m benchmarks.bpe_speed --vocab-size 4000 --repeats 1
"""

import argparse
import math
import time

from tinygrad_attn import text
from tinygrad_attn.tokenizers import BPETokenizer, CharTokenizer


def best_time(repeats, fn):
    """(the fastest of `repeats` calls of fn in seconds, what the last call returned)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def baselines(name, tokenizer, train, heldout):
    train_ids, heldout_ids = tokenizer.encode(train), tokenizer.encode(heldout)
    for model, loss in (("unigram", text.unigram_loss), ("bigram", text.bigram_loss)):
        nats = loss(train_ids, heldout_ids, tokenizer.vocab_size)
        per_char = text.nats_per_char(nats, len(heldout_ids), len(heldout))
        print(f"  {name:<9} V={tokenizer.vocab_size:<5} {model:<8} {nats:.3f} nats/token  {per_char:.3f} nats/char  "
              f"perplexity {text.perplexity(nats):.1f} per token")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bpe_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="runs to time; the fastest counts")
    args = p.parse_args(argv)

    documents = text.load_corpus()
    corpus = text.SEPARATOR.join(documents.values())
    print(f"corpus: {len(documents)} topics, {len(corpus):,} characters, {len(corpus.encode()):,} UTF-8 bytes "
          f"(joined by {text.SEPARATOR!r})")
    names = text.heldout_names(documents)
    train, heldout = text.split_corpus(documents)
    print(f"held out: {len(names)} topics, {len(heldout):,} characters ({', '.join(names)}); "
          f"train: {len(documents) - len(names)} topics, {len(train):,} characters")

    seconds, tokenizer = best_time(args.repeats, lambda: BPETokenizer.train(corpus, args.vocab_size))
    print(f"BPE training on the whole corpus to vocab_size={args.vocab_size}: {seconds:.2f} s "
          f"(best of {args.repeats})")
    # a fresh tokenizer for each run, so that its chunk cache starts empty
    seconds, ids = best_time(args.repeats, lambda: BPETokenizer(tokenizer.merges).encode(corpus))
    warm, _ = best_time(args.repeats, lambda: tokenizer.encode(corpus))
    assert tokenizer.decode(ids) == corpus
    print(f"encoding the corpus: {seconds:.2f} s ({warm:.2f} s with the chunk cache filled); {len(ids):,} tokens, "
          f"{len(corpus) / len(ids):.2f} characters per token; decode(encode(corpus)) == corpus")

    print("held-out baselines (tokenizers and counts from the training topics only):")
    baselines("char", CharTokenizer.train(train), train, heldout)
    baselines(f"BPE-{args.vocab_size}", BPETokenizer.train(train, args.vocab_size), train, heldout)


if __name__ == "__main__":
    main()
