"""The KV-cache memory tables of docs/kv-cache-memory.md, kept true by tests/test_kv_cache_memory.py.

The first table is measured: one layer of each rung at a small size is run over a prompt with
use_cache=True, and the bytes of the arrays left in its cache are counted (and checked against
the layer's cache_bytes()). The second evaluates the same formula, nn.attention.kv_cache_bytes,
at the sizes of published models, in the 16-bit numbers they store their caches in.

    python -m benchmarks.kv_cache_memory            # print both tables
    python -m benchmarks.kv_cache_memory --write    # and rewrite them in docs/kv-cache-memory.md
"""

import argparse
from pathlib import Path

import numpy as np

from tinygrad_attn import manual_seed, randn
from tinygrad_attn.nn import (GroupedQueryAttention, MultiHeadAttention, MultiHeadLatentAttention,
                              SlidingWindowAttention, TransformerConfig)
from tinygrad_attn.nn.attention import kv_cache_bytes

PAGE = Path(__file__).resolve().parents[1] / "docs" / "kv-cache-memory.md"
D, HEADS, CONTEXT, TOKENS = 64, 8, 64, 48  # the measured layers: head_dim 8, a prompt of 48 tokens
RUNGS = {  # name -> the layer, float32 as our models train
    "MultiHeadAttention": lambda: MultiHeadAttention(D, D, CONTEXT, 0.0, HEADS),
    "GroupedQueryAttention, 2 kv heads": lambda: GroupedQueryAttention(D, D, CONTEXT, 0.0, HEADS, 2),
    "GroupedQueryAttention, 1 kv head (MQA)": lambda: GroupedQueryAttention(D, D, CONTEXT, 0.0, HEADS, 1),
    "SlidingWindowAttention, window 16": lambda: SlidingWindowAttention(D, D, CONTEXT, 0.0, HEADS, 16),
    "SlidingWindowAttention, window 16, 2 kv heads": lambda: SlidingWindowAttention(D, D, CONTEXT, 0.0, HEADS, 16, 2),
    "MultiHeadLatentAttention, latent 16": lambda: MultiHeadLatentAttention(D, D, CONTEXT, 0.0, HEADS, 16),
}
GEMMA_3_PATTERN = TransformerConfig(vocab_size=1, context_length=131072, num_layers=62, window=1024,
                                    layer_pattern="LLLLLG")  # only its layer pattern is read
# name, the context it was trained for, its attention, and its layers as (how many, kv_cache_bytes sizes),
# from each model's config.json (docs/kv-cache-memory.md gives the sources)
PUBLISHED = [
    ("Llama-2-7B", "4K", "MHA, 32 layers x 32 kv heads x 128", [(32, dict(num_kv_heads=32, head_dim=128))]),
    ("Llama-3-8B", "8K", "GQA, 32 layers x 8 kv heads x 128", [(32, dict(num_kv_heads=8, head_dim=128))]),
    ("Gemma-3-27B", "128K", "GQA, 62 layers x 16 kv heads x 128; 5 local (window 1024) : 1 global",
     [(1, dict(num_kv_heads=16, head_dim=128, window=GEMMA_3_PATTERN.layer_window(i))) for i in range(62)]),
    ("Gemma-3-27B's sizes, all global", "", "GQA, 62 layers x 16 kv heads x 128",
     [(62, dict(num_kv_heads=16, head_dim=128))]),
    ("DeepSeek-V2", "128K", "MLA, 60 layers x (512 latent + 64 rotary key)", [(60, dict(kv_latent_dim=512 + 64))]),
    ("DeepSeek-V2's sizes with MHA", "", "60 layers x 128 kv heads x 128",
     [(60, dict(num_kv_heads=128, head_dim=128))]),
]
LENGTHS = [4096, 32768, 131072]


def measure():
    """[(rung, the cache's arrays as shapes, bytes measured, cache_bytes())] after a prompt of TOKENS tokens."""
    rows = []
    for name, make in RUNGS.items():
        manual_seed(0)
        layer = make()
        layer(randn(1, TOKENS, D), use_cache=True)
        arrays = [t.numpy() for t in layer.cache]
        measured = sum(a.nbytes for a in arrays)
        rows.append((name, " + ".join(str(a.shape) for a in arrays), measured, layer.cache_bytes(TOKENS, itemsize=4)))
    return rows


def measured_table(rows):
    lines = [f"| rung | the cache after {TOKENS} tokens (batch 1) | bytes, measured | = cache_bytes() | "
             "bytes per token |", "|---|---|---:|---:|---:|"]
    for name, shapes, measured, formula in rows:
        lines.append(f"| {name} | {shapes} | {measured:,} | {formula:,} | {measured / TOKENS:,.1f} |")
    return "\n".join(lines)


def published_bytes(layers, num_tokens, itemsize=2):
    """Bytes of the whole model's cache for one sequence of num_tokens tokens."""
    return sum(count * kv_cache_bytes(num_tokens, itemsize=itemsize, **sizes) for count, sizes in layers)


def published_table():
    lengths = " | ".join(f"{n // 1024}K tokens" for n in LENGTHS)
    lines = [f"| model | context | attention | per token, at 4K | {lengths} |",
             "|---|---|---|---:|" + "---:|" * len(LENGTHS)]
    for name, context, attention, layers in PUBLISHED:
        per_token = published_bytes(layers, LENGTHS[0]) / LENGTHS[0]
        totals = " | ".join(f"{published_bytes(layers, n) / 2 ** 30:,.2f} GiB" for n in LENGTHS)
        lines.append(f"| {name} | {context} | {attention} | {per_token / 1024:,.1f} KiB | {totals} |")
    return "\n".join(lines)


def tables():
    return measured_table(measure()), published_table()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.kv_cache_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help=f"replace the tables in {PAGE.name}")
    args = p.parse_args(argv)
    measured, published = tables()
    print(measured, published, sep="\n\n")
    if args.write:
        text = PAGE.read_text()
        for table in (measured, published):  # each found by its header row, which the figures do not change
            begin = text.index(table.split("\n")[0])
            end = text.find("\n\n", begin)
            text = text[:begin] + table + (text[end:] if end != -1 else "\n")
        PAGE.write_text(text)
        print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
