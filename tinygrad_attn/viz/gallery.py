"""The diagrams in docs/graphs/, drawn with the public viz.draw from real forward and backward passes.

    python -m tinygrad_attn.viz.gallery docs/graphs        (what `make graphs` runs)

RUNGS is the table of the layers one can draw, at sizes small enough to read (4 tokens, d=8,
two heads); `python -m tinygrad_attn.draw` draws them at any other size. A new attention
layer is one line in it. FIGURES adds what is not one layer called on embeddings: the
functional core, the backward view, the whole model with its loss, chapter 1's example and
the conceptual figures of concepts.py. Every figure is sized for a slide, its direction and
depth chosen for it: its aspect ratio between 0.4 and 2.5, its smallest text at least 9 px
when it is shown 1280 px wide (tests/test_viz_slides.py renders each and checks).
"""

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import Tensor, manual_seed, randn
from ..data import IGNORE_INDEX, CopyTask
from ..nn import attention
from ..nn import functional as F
from ..nn.transformer import Transformer, TransformerBlock, TransformerConfig
from . import concepts
from .drawing import draw
from .modules import record_modules
from .names import record_names
from .tracing import retain_grads


@dataclass(frozen=True)
class Rung:
    """A layer to draw. build(tokens=, d_model=, ...) makes it (or a function): its keyword
    parameters are the sizes it takes and their defaults. It is called on `inputs` tensors of
    (1, tokens, d_model) embeddings (2 for a cross-attention: x and the context); the title is
    formatted with the sizes (and group = heads // kv_heads)."""

    build: object
    title: str
    depth: int = None  # drawn collapsed to this depth unless told otherwise
    inputs: int = 1


RUNGS = {
    "simple_self_attention": Rung(lambda tokens=4, d_model=8: attention.simple_self_attention,
                                  "simple self-attention: softmax(X Xᵀ) X, no trainable weights"),
    "causal_attention": Rung(lambda tokens=4, d_model=8: attention.CausalAttention(d_model, d_model, tokens, 0.0),
                             "CausalAttention: the future's scores set to -inf before the softmax", 1),
    "multihead_attention_wrapper": Rung(lambda tokens=4, d_model=8, heads=2: attention.MultiHeadAttentionWrapper(
        d_model, d_model // heads, tokens, 0.0, heads),
        "MultiHeadAttentionWrapper: {heads} CausalAttention heads, concatenated", 2),
    "multihead_attention": Rung(lambda tokens=4, d_model=8, heads=2: attention.MultiHeadAttention(
        d_model, d_model, tokens, 0.0, heads),
        "MultiHeadAttention: one projection split into {heads} heads, then out_proj", 1),
    "grouped_query_attention": Rung(lambda tokens=4, d_model=8, heads=4, kv_heads=2: attention.GroupedQueryAttention(
        d_model, d_model, tokens, 0.0, heads, kv_heads),
        "GroupedQueryAttention: {kv_heads} key/value heads, each shared by {group} of the\n{heads} query heads "
        "(repeat_interleave: unsqueeze, expand, reshape)", 1),
    "bidirectional_attention": Rung(lambda tokens=4, d_model=8, heads=2: attention.BidirectionalAttention(
        d_model, d_model, tokens, 0.0, heads), "BidirectionalAttention: no causal mask, every token sees every other", 1),
    "cross_attention": Rung(lambda tokens=4, d_model=8, heads=2: attention.CrossAttention(
        d_model, d_model, tokens, 0.0, heads), "CrossAttention: queries from x, keys and values from the context", 1, 2),
    "sliding_window_attention": Rung(lambda tokens=6, d_model=8, heads=2, window=3: attention.SlidingWindowAttention(
        d_model, d_model, tokens, 0.0, heads, window), "SlidingWindowAttention: only the {window} most recent keys (a band "
        "mask)", 1),
    "latent_attention": Rung(lambda tokens=4, d_model=8, heads=2, latent=4: attention.MultiHeadLatentAttention(
        d_model, d_model, tokens, 0.0, heads, latent), "MultiHeadLatentAttention: keys and values up-projected from a "
        "cached latent of {latent}", 1),
    "transformer_block": Rung(lambda tokens=4, d_model=8, heads=2, kv_heads=None: TransformerBlock(TransformerConfig(
        vocab_size=1, context_length=tokens, d_model=d_model, num_layers=1, num_heads=heads, num_kv_heads=kv_heads)),
        "TransformerBlock (pre-LayerNorm): x + att(norm1(x)), then x + ff(norm2(x))", 1),
}


def rung_sizes(name):
    """{size: default} that RUNGS[name] takes."""
    return {k: p.default for k, p in inspect.signature(RUNGS[name].build).parameters.items()}


def draw_rung(name, sizes=None, view="forward", **options):
    """The Drawing of RUNGS[name] at its default sizes, changed by `sizes` {size: value}; options go to draw()."""
    rung = RUNGS[name]
    s = {**rung_sizes(name), **(sizes or {})}
    layer = rung.build(**s)
    group = s["heads"] // s["kv_heads"] if s.get("kv_heads") else None
    title = rung.title.format(group=group, **s)
    if view == "backward":
        title = title.split(":")[0] + ", backward"
    options = {"title": title, "depth": rung.depth, **options}
    return draw(layer, *[randn(1, s["tokens"], s["d_model"]) for _ in range(rung.inputs)], view=view, **options)


# ---------------------------------------------------------------------------------------
# Figures that are not one layer called on embeddings
# ---------------------------------------------------------------------------------------

def scaled_dot_product_attention():
    """F.scaled_dot_product_attention on projections written out: the functional core of every layer."""
    x = randn(1, 4, 8)
    weights = {name: randn(8, 8, requires_grad=True) for name in ("W_query", "W_key", "W_value")}
    q, k, v = (x @ w for w in weights.values())  # (1, T, D) each
    q.name, k.name, v.name, x.name = "queries", "keys", "values", "inputs"
    with record_names() as rec:
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / sqrt(d)) v
    rec.variables.update({id(w): name for name, w in weights.items()})
    return draw(out, names=rec, title="scaled dot-product attention: softmax(Q Kᵀ / √d) V")


def causal_attention_backward():
    """The backward view of causal_attention: every gradient retained, each edge labelled with its shape."""
    return draw_rung("causal_attention", view="backward", depth=None, data=None)


def copy_task_model():
    """The model `make train` trains, at toy size, with its loss on one copy-task example."""
    task = CopyTask(num_symbols=4, min_len=2)  # 2 symbols, SEP, 2 symbols: 4 tokens read
    idx, targets, _ = task.get_batch(np.random.default_rng(0), 1)  # (1, T) each
    model = Transformer(TransformerConfig(vocab_size=task.vocab_size, context_length=task.context_length, d_model=8,
                                          num_layers=2, num_heads=2))
    with record_modules(model) as rec:
        logits = model(Tensor(idx))  # (1, T, vocab_size)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    logits.name, loss.name = "logits", "loss"
    rec.variables[id(idx)] = "token ids"
    return draw(loss, names=rec, depth=1, title="the copy-task Transformer, one box per module call (2 blocks), "
                "and its loss")


def autograd_example():
    """Chapter 1's d = a * b + a after backward: the data and the gradient of every tensor."""
    a, b = Tensor(2.0, requires_grad=True), Tensor(-3.0, requires_grad=True)
    a.name, b.name = "a", "b"
    c = a * b
    c.name = "c"
    d = c + a
    d.name = "d"
    retain_grads(d)
    d.backward(retain_graph=True)
    return draw(d, compact=False, title="d = a * b + a after d.backward(): each box shows a value and the "
                "gradient of d with respect to it.\na is used twice, so its gradient adds up the two paths: b + 1 = -2")


FIGURES = {"scaled_dot_product_attention": scaled_dot_product_attention,
           "causal_attention_backward": causal_attention_backward,
           "copy_task_model": copy_task_model,
           "autograd_example": autograd_example,
           **concepts.CONCEPTS}


def main(out_dir):
    out_dir = Path(out_dir)
    drawings = [(name, lambda name=name: draw_rung(name)) for name in RUNGS] + list(FIGURES.items())
    for name, make in drawings:
        manual_seed(0)
        path = make().save(out_dir / name)
        print(f"{path}  ({path.stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/graphs")
