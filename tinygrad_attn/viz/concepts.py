"""The conceptual figures of attention, each measured from a real layer so that it cannot drift.

    concept_qkv_flow          Q, K, V with their matrix shapes: the trace of SelfAttention_v1 on the book's inputs
    concept_causal_mask       scores, the mask, masked scores, weights renormalised (masked ones exactly 0)
    concept_head_split        (b, T, d_out) -> (b, T, H, hd) -> (b, H, T, hd) and back, entry by entry
    concept_gqa_sharing       which key/value head each query head reads: MHA, GQA, MQA
    concept_kv_cache          the cache growing over decode steps, and the mask rows each step needs
    concept_left_padding      which keys each query may see under left padding + the causal mask
    concept_journey_heatmap   the book's 6x6 weights of "Your journey starts with one step"

Each function runs the layer, reads what it computed (its attention weights, the tensors its
code binds to `attn_scores` or `queries`, record_names().tensors), checks the property the
figure shows (masked weights are exactly 0, each query head reads the key/value head it is
drawn with) and returns a Drawing of graphviz tables.
"""

import numpy as np

from .. import Tensor, manual_seed, randn
from ..nn import attention
from ..nn.masks import causal_blocked
from .dot import quote, title_table
from .drawing import draw
from .names import record_names
from .rendering import Drawing
from .tables import cell, html, matrix, side_by_side, table, value_colours

# The book's example, section 3.3: six tokens embedded in three dimensions.
JOURNEY_WORDS = ["Your", "journey", "starts", "with", "one", "step"]
JOURNEY = np.array([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                    [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]], dtype=np.float32)
HEAD_COLOURS = ["#a6cee3", "#fdbf6f", "#b2df8a", "#fb9a99", "#cab2d6", "#ffff99", "#1f78b4", "#e31a1c"]
BLOCKED, PADDING = "#eeeeee", "#c7c7c7"


def _figure(name, title, body, rankdir="TB"):
    """A Drawing of nodes and edges (DOT lines) under a title, nodes drawn as their HTML tables."""
    head = [f'graph [rankdir={rankdir}, newrank=true, fontname="Helvetica", fontsize=12, nodesep=0.35, '
            f"ranksep=0.35, labelloc=t, label=<{title_table(title.split(chr(10)))}>];",
            'node [shape=plain, fontname="Helvetica", fontsize=10];',
            'edge [fontname="Helvetica", fontsize=10, color="#555555"];']
    return Drawing(f"digraph {quote(name)} {{\n" + "".join(f"  {line}\n" for line in head + body) + "}\n")


def _node(id, html_table):
    return f"{id} [label=<{html_table}>];"


def _numbers(a):
    """Texts and fills of a float matrix: two decimals on viridis, -inf as −∞ and an exact 0 as 0, on grey."""
    texts = [["−∞" if v == -np.inf else "0" if v == 0 else f"{v:.2f}".replace("-0.00", "0.00") for v in row]
             for row in a]
    fills = value_colours(np.where(a == 0, np.nan, a))
    return texts, np.where(np.isfinite(a) & (a != 0), fills, BLOCKED)


def qkv_flow():
    """The trace of SelfAttention_v1(3, 2) on the six tokens, every tensor drawn as its matrix."""
    manual_seed(123)
    return draw(attention.SelfAttention_v1(3, 2), Tensor(JOURNEY), data="cells", rankdir="LR", legend=False,
                title="queries, keys, values: the six tokens (6 x 3) times W_query, W_key, W_value (3 x 2); "
                      "scores Q Kᵀ (6 x 6), weights softmax(scores / √2), context = weights V (6 x 2)")


def causal_mask():
    """CausalAttention on the six tokens: its scores, its mask buffer, the masked scores, the weights."""
    manual_seed(123)
    layer = attention.CausalAttention(3, 2, context_length=6, dropout=0.0)
    with record_names() as rec:
        layer(Tensor(JOURNEY[None]))
    scores, masked = (t.numpy()[0] for t in rec.tensors("attn_scores"))  # before and after masked_fill
    weights = layer.last_attn_weights.numpy()[0, 0]
    blocked = layer.mask.data[:6, :6]
    assert (weights[blocked] == 0).all() and np.allclose(weights.sum(-1), 1), "masked weights must be exactly 0"
    words = dict(rows=JOURNEY_WORDS, cols=JOURNEY_WORDS, width=42)
    sums = np.column_stack([weights, weights.sum(-1)])
    texts, fills = _numbers(sums)
    fills[:, -1] = "#ffffff"
    body = [_node("scores", matrix(*_numbers(scores), title="attn_scores = queries @ keysᵀ", **words)),
            _node("mask", matrix([["True" if b else "False" for b in row] for row in blocked],
                                 [[PADDING if b else "#ffffff" for b in row] for row in blocked],
                                 title="mask buffer: True above the diagonal (the future)", **words)),
            _node("masked", matrix(*_numbers(masked), title="masked_fill(mask, -inf)", **words)),
            _node("weights", matrix(texts, fills, title="attn_weights = softmax(scores / √2): each row sums to 1",
                                    rows=JOURNEY_WORDS, cols=JOURNEY_WORDS + ["sum"], width=42)),
            "{ rank=same; scores; mask; }", "{ rank=same; masked; weights; }",
            "scores -> masked;", "mask -> masked;", 'masked -> weights [label=" softmax "];']
    return _figure("concept_causal_mask", "the causal mask: the future's scores become -inf, so after the softmax "
                   "their weights are exactly 0 and each row's weights, renormalised over the past, sum to 1", body)


def head_split(tokens=3, d_out=6, heads=2):
    """MultiHeadAttention's split into heads and back, read off the tensors its code names queries and context_vec.

    Each cell shows which column of the (T, d_out) projection its number came from (going down)
    or which column of its head (going up), found by matching the numbers; colour = head."""
    manual_seed(0)
    layer = attention.MultiHeadAttention(d_out, d_out, tokens, 0.0, num_heads=heads)
    with record_names() as rec:
        layer(randn(1, tokens, d_out))
    proj, split = rec.tensors("queries")  # (1, T, d_out), (1, H, T, hd)
    merged_t, merged = rec.tensors("context_vec")  # (1, T, H, hd), (1, T, d_out)
    per_head = merged_t._ctx.parents[0]  # (1, H, T, hd): attention's output, head by head
    hd = d_out // heads
    column = {v: (c // hd, c) for row in proj.numpy()[0] for c, v in enumerate(row)}  # number -> (head, column)
    in_head = {v: (h, j) for h, m in enumerate(per_head.numpy()[0]) for row in m for j, v in enumerate(row)}

    def stage(id, t, caption, where, block, row):
        """t (1, T, d) as one matrix, (1, A, B, C) as A matrices of B x C, named `block` i, rows `row` i."""
        a = t.numpy()[0]
        blocks, names = (a[None], [""]) if a.ndim == 2 else (a, [f"{block} {i}" for i in range(len(a))])
        parts = [matrix([[str(where[v][1]) for v in r] for r in b], [[HEAD_COLOURS[where[v][0]] for v in r] for r in b],
                        title=name, rows=[f"{row}{i}" for i in range(len(b))], width=18)
                 for name, b in zip(names, blocks)]
        return _node(id, table([[cell(caption)], [cell(f"{t.shape}")], [f"<TD>{side_by_side(parts)}</TD>"]]))

    body = [stage("proj", proj, "queries = W_query(x)", column, "", "t"),
            stage("view", split._ctx.parents[0], "view(b, T, H, hd)", column, "token", "h"),
            stage("split", split, "transpose(1, 2)", column, "head", "t"),
            stage("heads", per_head, "attn_weights @ values", in_head, "head", "t"),
            stage("back", merged_t, "transpose(1, 2)", in_head, "token", "h"),
            stage("merged", merged, "reshape(b, T, d_out)", in_head, "", "t"),
            "{ rank=same; proj; merged; }", "{ rank=same; view; back; }", "{ rank=same; split; heads; }",
            "proj -> view -> split;", 'split -> heads [label=" attention, \\nhead by head "];',
            "merged -> back -> heads [dir=back];"]
    return _figure("concept_head_split", f"splitting d_out = {d_out} into {heads} heads of head_dim {hd} (left, "
                   "down) and back (right, up): each cell shows the column its number had in the projection (left) "
                   "or in its head (right); colour = head", body)


def gqa_sharing(heads=8, kv_options=(8, 2, 1), d=16):
    """Which key/value head each query head reads, found by comparing from_cache's output with to_cache's."""
    manual_seed(0)
    x = randn(1, 3, d)
    body = []
    for kv in kv_options:
        layer = (attention.MultiHeadAttention(d, d, 3, 0.0, heads) if kv == heads else
                 attention.GroupedQueryAttention(d, d, 3, 0.0, heads, kv))
        cached = layer.to_cache(x, 0)  # what the cache keeps: (b, kv, T, hd) keys and values
        keys, _ = layer.from_cache(cached, x.shape[1])  # what attention reads: (b, heads, T, hd)
        reads = [next(k for k in range(kv) if np.array_equal(keys.numpy()[0, h], cached[0].numpy()[0, k]))
                 for h in range(heads)]
        kind = "multi-head" if kv == heads else "multi-query" if kv == 1 else "grouped-query"
        q = matrix([[f"q{h}" for h in range(heads)]], [[HEAD_COLOURS[reads[h] % 8] for h in range(heads)]],
                   rows=["query heads"], width=34, ports=[[f"q{h}" for h in range(heads)]])
        k = matrix([[f"k/v {i}" for i in range(kv)]], [[HEAD_COLOURS[i % 8] for i in range(kv)]], width=34,
                   rows=["key/value heads"], ports=[[f"k{i}" for i in range(kv)]])
        body += [f"subgraph cluster_{kv} {{",
                 f'  label=<{html(kind)}: {html(type(layer).__name__)}(num_heads={heads}, num_kv_heads={kv}); '
                 f'its KV cache holds {kv} of {heads} heads ({100 * kv / heads:g}%)>; style="rounded"; '
                 'color="#999999"; fontsize=11;', f"  {_node(f'q_{kv}', q)}", f"  {_node(f'kv_{kv}', k)}", "}",
                 *[f"q_{kv}:q{h}:s -> kv_{kv}:k{reads[h]}:n [arrowsize=0.6];" for h in range(heads)]]
    body += [f"kv_{a} -> q_{b} [style=invis];" for a, b in zip(kv_options, kv_options[1:])]
    return _figure("concept_gqa_sharing", f"{heads} query heads and the key/value heads they read (colour = the "
                   "key/value head): a group of consecutive query heads shares one (repeat_interleave)", body)


def kv_cache(steps=(3, 1, 2, 1)):
    """MultiHeadAttention with use_cache=True: a prefill of steps[0] tokens, then decode steps, measured.

    One table: per step, the cache (the new tokens' keys and values coloured) over the new
    queries' attention weights, so that key j sits under cache slot j; 0 = masked."""
    manual_seed(0)
    total = sum(steps)
    layer = attention.MultiHeadAttention(4, 4, total, 0.0, num_heads=1)
    x = randn(1, total, 4)
    blocks, start = [], 0
    for i, n in enumerate(steps):
        layer(x[:, start:start + n], use_cache=True)
        end = layer.cache_k.shape[2]  # the cache now holds every token so far
        weights = layer.last_attn_weights.numpy()[0, 0]  # (n, end): the new queries against every cached key
        assert (weights == 0).tolist() == causal_blocked(n, end).tolist(), "the mask rows of absolute positions"
        texts, fills = _numbers(weights)
        free = [cell("", "#ffffff", 36, 18)] * (total - end)  # slots the cache has not reached: every step aligns
        grid = [[cell("cache", width=54, height=18)] + [cell(f"k{j} v{j}", HEAD_COLOURS[1] if j >= start else
                                                             "#dddddd", 36, 18) for j in range(end)] + free]
        grid += [[cell(f"query {start + q}", width=54, height=18)] +
                 [cell(t, f, 36, 18) for t, f in zip(texts[q], fills[q])] + free for q in range(n)]
        what = f"{'prefill' if i == 0 else 'decode'} {n} token{'s' * (n > 1)}"
        blocks += [[cell(f"{what}: T_q = {n}, T_k = {end}, the rows {start}:{end} of the causal mask",
                         extra=' ALIGN="LEFT"')], [f"<TD>{table(grid, spacing=2)}</TD>"]]
        start = end
    return _figure("concept_kv_cache", "the KV cache over decode steps: each call appends the new tokens' keys and "
                   "values (coloured); its queries sit at absolute positions start..end-1 and need the rows "
                   "start:end of the causal mask, not its top-left corner (attention weights, 0 = masked)",
                   [_node("steps", table(blocks))])


def left_padding(pad=2):
    """MultiHeadAttention on padded tokens: which keys each query sees, read off its attention weights."""
    manual_seed(0)
    words = ["PAD"] * pad + JOURNEY_WORDS[:6 - pad]
    x = np.concatenate([np.zeros((pad, 3), np.float32), JOURNEY[:6 - pad]])[None]  # (1, 6, 3)
    layer = attention.MultiHeadAttention(3, 2, 6, 0.0, num_heads=1)
    layer(Tensor(x), attention_mask=np.array([[0] * pad + [1] * (6 - pad)]))
    weights = layer.last_attn_weights.numpy()[0, 0]
    assert np.isfinite(weights).all(), "a query that may see no key gets zero weights, not NaN"
    future = causal_blocked(6, 6)
    texts, fills = _numbers(np.column_stack([weights, weights.sum(-1)]))
    for i, j in zip(*np.nonzero(weights == 0)):
        texts[i][j], fills[i, j] = ("future", BLOCKED) if future[i, j] else ("pad", PADDING)
    fills[:, -1] = "#ffffff"
    legend = matrix([["a weight", "pad: a padding key", "future: the causal mask"]],
                    [[value_colours(np.array([0.0, 1.0]))[1], PADDING, BLOCKED]], width=130)
    body = [_node("weights", matrix(texts, fills, width=44, rows=[f"query {w}" for w in words], cols=words + ["sum"],
                                    title="attn_weights, attention_mask = " + str([0] * pad + [1] * (6 - pad)))),
            _node("legend", legend), "weights -> legend [style=invis];"]
    return _figure("concept_left_padding", f"left padding ({pad} PAD tokens) and the causal mask: a query sees the "
                   "real keys up to itself; a padding query sees none, and gets all-zero weights, not NaN", body)


def journey_heatmap():
    """simple_self_attention's weights on the book's six tokens (section 3.3.1: 0.2098 0.2006 ...)."""
    weights, _ = attention.simple_self_attention(Tensor(JOURNEY))
    w = weights.numpy()
    table_ = matrix([[f"{v:.2f}" for v in row] for row in w], value_colours(w), width=52, rows=JOURNEY_WORDS,
                    cols=JOURNEY_WORDS, title="query (row) attends to key (column)")
    body = [_node("weights", table_)]
    return _figure("concept_journey_heatmap", '"Your journey starts with one step": the attention weights of '
                   "simple self-attention, each row the softmax of the dot products x_i · x_j, summing to 1", body)


CONCEPTS = {"concept_qkv_flow": qkv_flow, "concept_causal_mask": causal_mask, "concept_head_split": head_split,
            "concept_gqa_sharing": gqa_sharing, "concept_kv_cache": kv_cache, "concept_left_padding": left_padding,
            "concept_journey_heatmap": journey_heatmap}
