"""The computation graphs in docs/graphs/, at sizes small enough to read: T=4 tokens, d=8, two heads.

    python -m tinygrad_attn.viz.gallery docs/graphs        (what `make graphs` runs)

Each diagram is drawn from a real forward pass, so it cannot drift from the code. The
tensors a reader follows (queries, keys, values, attn_scores, mask, attn_weights,
context_vec) are labelled with the variable names the layers' code binds them to
(record_names), so the layers need not know they are being drawn.
"""

import sys
from pathlib import Path

import numpy as np

from .. import Tensor, manual_seed, ops, randn
from ..data import IGNORE_INDEX, CopyTask
from ..nn import attention
from ..nn import functional as F
from ..nn.transformer import Transformer, TransformerBlock, TransformerConfig
from .modules import record_modules
from .names import record_names
from .rendering import render
from .tracing import retain_grads

T, D, HEADS = 4, 8, 2


def inputs():
    """(batch, num_tokens, d_in) inputs; they require a gradient, as the embeddings feeding a layer
    do, so that the engine records the ops on them alone (a LayerNorm of the inputs) too."""
    x = randn(1, T, D, requires_grad=True)
    x.name = "inputs"
    return x


def run_layer(layer, title, hide_shape_ops=True, **options):
    """One forward pass of `layer` on (1, T, D) inputs, recorded for clusters and names."""
    with record_modules(layer) as rec:
        out = layer(inputs())
    return out, dict(modules=rec, hide_shape_ops=hide_shape_ops, title=title, **options)


# ---------------------------------------------------------------------------------------
# The diagrams: name -> a function returning (tensor to draw, options for render)
# ---------------------------------------------------------------------------------------

def simple_self_attention():
    """Book section 3.3, no trainable weights. The inputs require a gradient here only so
    that the engine records a graph to draw."""
    x = randn(T, D, requires_grad=True)
    x.name = "inputs"
    with record_names() as rec:
        _, context = attention.simple_self_attention(x)
    return context, dict(names=rec, title="simple self-attention: softmax(X X^T) X, no weights (the "
                                               "inputs require a gradient only so that a graph is recorded)")


def scaled_dot_product_attention():
    """F.scaled_dot_product_attention on projections written out: the functional core of every layer."""
    x = randn(1, T, D)
    x.name = "inputs"
    weights = {name: randn(D, D, requires_grad=True) for name in ("W_query", "W_key", "W_value")}
    q, k, v = (x @ w for w in weights.values())  # (1, T, D) each
    q.name, k.name, v.name = "queries", "keys", "values"
    with record_names() as rec:
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
    rec.variables.update({id(w): name for name, w in weights.items()})
    return out, dict(names=rec, hide_shape_ops=True,
                                     title="scaled dot-product attention: softmax(Q K^T / sqrt(d)) V")


def causal_attention():
    return run_layer(attention.CausalAttention(D, D, T, dropout=0.0),
                     "CausalAttention: future keys masked to -inf before the softmax (mask: 1 = masked)")


def causal_attention_backward():
    """The backward view of the same layer: every gradient retained, each edge labelled with its shape."""
    out, options = causal_attention()
    loss = (out * randn(*out.shape)).sum()  # a random projection: a uniform one would hide wrong gradients
    loss.name = "loss"
    retain_grads(loss)
    loss.backward(retain_graph=True)
    return loss, dict(options, view="backward", title="CausalAttention, backward: the gradient of the loss "
                      "flows right to left, along the edges, to the weights")


def multihead_attention_wrapper():
    return run_layer(attention.MultiHeadAttentionWrapper(D, D // HEADS, T, dropout=0.0, num_heads=HEADS),
                     f"MultiHeadAttentionWrapper: {HEADS} CausalAttention heads side by side, concatenated")


def multihead_attention():
    return run_layer(attention.MultiHeadAttention(D, D, T, dropout=0.0, num_heads=HEADS),
                     f"MultiHeadAttention: one projection split into {HEADS} heads "
                     f"(the head dim is dim 1 of the (b, heads, T, head_dim) tensors), then out_proj")


def grouped_query_attention():
    return run_layer(attention.GroupedQueryAttention(D, D, T, dropout=0.0, num_heads=2 * HEADS, num_kv_heads=HEADS),
                     f"GroupedQueryAttention: {HEADS} key/value heads, each shared by 2 of the {2 * HEADS} query "
                     "heads (repeat_interleave: unsqueeze, expand, reshape)", hide_shape_ops=(ops.Reshape, ops.Permute, ops.Index))


def transformer_block():
    cfg = TransformerConfig(vocab_size=6, context_length=T, d_model=D, num_layers=1, num_heads=HEADS)
    return run_layer(TransformerBlock(cfg), "TransformerBlock (pre-LayerNorm): x + att(norm1(x)), then "
                     "x + ff(norm2(x)); the attention's projections and the MLP's layers drawn as boxes", depth=2)


def copy_task_model():
    """The model `make train` trains, at toy size, with its loss on one copy-task example."""
    task = CopyTask(num_symbols=4, min_len=T // 2)  # 2 symbols, SEP, 2 symbols: T = 4 tokens read
    idx, targets, _ = task.get_batch(np.random.default_rng(0), 1)  # (1, T) each
    model = Transformer(TransformerConfig(vocab_size=task.vocab_size, context_length=task.context_length,
                                          d_model=D, num_layers=2, num_heads=HEADS))
    tokens = Tensor(idx)
    with record_modules(model) as rec:
        logits = model(tokens)  # (1, T, vocab_size)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    logits.name, loss.name = "logits", "loss"
    return loss, dict(modules=rec, names={"token ids": tokens}, depth=1, hide_shape_ops=True,
                      title="the copy-task Transformer, one box per module call (2 blocks), and its loss")


DIAGRAMS = {"simple_self_attention": simple_self_attention,
            "scaled_dot_product_attention": scaled_dot_product_attention,
            "causal_attention": causal_attention,
            "causal_attention_backward": causal_attention_backward,
            "multihead_attention_wrapper": multihead_attention_wrapper,
            "multihead_attention": multihead_attention,
            "grouped_query_attention": grouped_query_attention,
            "transformer_block": transformer_block,
            "copy_task_model": copy_task_model}


def main(out_dir):
    out_dir = Path(out_dir)
    for name, make in DIAGRAMS.items():
        manual_seed(0)
        root, options = make()
        path = render(root, out_dir / name, **options)
        print(f"{path}  ({path.stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/graphs")
