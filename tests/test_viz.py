"""Drawing: the traced graph, its DOT text, rendering with and without graphviz, module clusters, SVG plots."""

import re
import shutil
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tinygrad_attn import Tensor, nn, viz
from tinygrad_attn.viz import rendering as render_module

SVG = "{http://www.w3.org/2000/svg}"

GOLDEN = r'''digraph "computation graph" {
  graph [rankdir=TB, newrank=true, fontname="Helvetica", fontsize=12, nodesep=0.3, ranksep=0.35, labelloc=t, label=<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1"><TR><TD><TABLE BORDER="0" CELLBORDER="1" CELLSPACING="3" CELLPADDING="0" FIXEDSIZE="TRUE" WIDTH="268" HEIGHT="34"><TR><TD BGCOLOR="#fdd0a2" FIXEDSIZE="TRUE" WIDTH="117" HEIGHT="28"><FONT POINT-SIZE="9">parameter<BR/>(leaf, requires grad)</FONT></TD><TD BGCOLOR="#f0f0f0" FIXEDSIZE="TRUE" WIDTH="72" HEIGHT="28"><FONT POINT-SIZE="9">intermediate</FONT></TD><TD BGCOLOR="#a1d99b" FIXEDSIZE="TRUE" WIDTH="42" HEIGHT="28"><FONT POINT-SIZE="9">output</FONT></TD><TD BGCOLOR="#fff7bc" STYLE="ROUNDED" FIXEDSIZE="TRUE" WIDTH="22" HEIGHT="28"><FONT POINT-SIZE="9">op</FONT></TD></TR></TABLE></TD></TR></TABLE>>];
  node [fontname="Helvetica", fontsize=10];
  edge [fontname="Helvetica", fontsize=9, color="#555555"];
  t4 [shape=box, style=filled, fillcolor="#a1d99b", label="scalar\n14"];
  op2 [shape=ellipse, style=filled, fillcolor="#fff7bc", label="Sum"];
  t3 [shape=box, style=filled, fillcolor="#f0f0f0", label="(2,)\n[4, 10]"];
  op1 [shape=ellipse, style=filled, fillcolor="#fff7bc", label="Add"];
  t2 [shape=box, style=filled, fillcolor="#f0f0f0", label="(2,)\n[3, 8]"];
  op0 [shape=ellipse, style=filled, fillcolor="#fff7bc", label="Mul"];
  t1 [shape=box, style=filled, fillcolor="#fdd0a2", label="b\n(2,)\n[3, 4]"];
  t0 [shape=box, style=filled, fillcolor="#fdd0a2", label="a\n(2,)\n[1, 2]"];
  t0 -> op0 [weight=3];
  t1 -> op0;
  op0 -> t2;
  t2 -> op1;
  t0 -> op1 [weight=3];
  op1 -> t3;
  t3 -> op2;
  op2 -> t4;
}
'''


def small_expression():
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor([3.0, 4.0], requires_grad=True)
    return a, b, (a * b + a).sum()


def node_lines(dot):
    return [line.strip() for line in dot.splitlines() if line.strip().startswith(("t", "op", "m")) and "->" not in line]


def edge_lines(dot):
    return [line.strip() for line in dot.splitlines() if "->" in line]


def title_text(dot):
    """The title and captions of a drawing, its wrapped lines joined again."""
    return " ".join(re.findall(r"<TD>([^<]*)</TD>", dot))


# ----- trace and DOT -----

def test_dot_of_small_expression_matches_golden():
    a, b, out = small_expression()
    assert viz.to_dot(out, names={"a": a, "b": b}) == GOLDEN


def test_trace_is_deterministic_and_counts_match_the_ops():
    a, b, out = small_expression()
    g = viz.trace(out)
    assert [n.id for n in g.nodes] == ["t0", "t1", "op0", "t2", "op1", "t3", "op2", "t4"]
    assert [n.label for n in g.nodes if n.kind == "op"] == ["Mul", "Add", "Sum"]
    assert sum(n.kind == "tensor" for n in g.nodes) == 5  # a, b, a*b, a*b+a, the sum
    assert len(g.edges) == 2 + 1 + 2 + 1 + 1 + 1  # inputs and output of each op
    assert [n.role for n in g.nodes if n.kind == "tensor"] == ["parameter", "parameter", "intermediate",
                                                               "intermediate", "output"]
    assert viz.to_dot(out) == viz.to_dot(viz.trace(out))  # a Graph or a Tensor, the same text
    assert viz.to_dot(out) == viz.to_dot(small_expression()[2])  # ids come from the walk, not id()


def test_x_times_x_keeps_both_edges():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    g = viz.trace(x * x)
    assert [(e.src, e.dst) for e in g.edges] == [("t0", "op0"), ("t0", "op0"), ("op0", "t1")]
    assert edge_lines(viz.to_dot(x * x)).count("t0 -> op0 [weight=3];") == 2  # used twice: pulls its uses close


def test_reused_non_leaf_is_one_node():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x + x
    g = viz.trace(y * y)
    assert sum(n.kind == "tensor" for n in g.nodes) == 3
    assert len(g.edges) == 6


def test_inputs_constants_and_names():
    w = Tensor(np.ones((3, 2)), requires_grad=True)
    w.name = "weight"
    x = Tensor(np.arange(6.0).reshape(2, 3))
    out = (x @ w) * 2.0
    roles = {n.label or n.id: n.role for n in viz.trace(out).nodes if n.kind == "tensor"}
    assert roles["weight"] == "parameter" and list(roles.values()).count("input") == 2  # x and the constant 2
    dot = viz.to_dot(out, names={"W": w})
    assert 'label="W\\n(3, 2)\\n' in dot  # a names= entry wins over .name; float32, the default, goes unsaid
    assert "[[0, 1, 2], [3, 4, 5]]" in dot


def test_large_tensor_is_summarised():
    x = Tensor(np.linspace(-1, 3, 100), requires_grad=True)
    dot = viz.to_dot(x.exp().sum())
    assert "(100,)\\n[-1, 3] mean 1" in dot
    assert "[-1, 3]" not in viz.to_dot(x.exp().sum(), data=None)  # shapes only


def test_mask_is_drawn_as_a_constant_with_its_pattern():
    scores = Tensor(np.zeros((4, 4)), requires_grad=True)
    mask = ~nn.functional.causal_mask(4)
    out = scores.masked_fill(mask, float("-inf")).softmax(-1)
    g = viz.trace(out, names={"causal mask": mask})
    const = [n for n in g.nodes if n.label == "causal mask"]
    assert len(const) == 1 and const[0].role == "input" and const[0].obj is None
    assert [e for e in g.edges if e.src == const[0].id][0].grad is False
    dot = viz.to_dot(g)
    assert "1 = True\\n0111\\n0011\\n0001\\n0000" in dot
    assert 'label="MaskedFill\\nvalue=-inf"' in dot and 'label="Softmax\\ndim=1"' in dot


def test_multiple_roots_and_deep_graph():
    x = Tensor([1.0], requires_grad=True)
    y = x
    for _ in range(3000):  # deeper than Python's recursion limit
        y = y * 1.0
    g = viz.trace(y, x * 2.0)
    assert sum(n.kind == "op" for n in g.nodes) == 3001
    assert [n.role for n in g.nodes if n.kind == "tensor"].count("output") == 2


# ----- gradients -----

def test_no_gradient_is_drawn_before_backward():
    a, b, out = small_expression()
    assert "grad" not in "".join(node_lines(viz.to_dot(out, legend=False)))


def test_gradients_after_backward_with_retained_graph():
    a, b, out = small_expression()
    out.backward(retain_graph=True)
    dot = viz.to_dot(out, names={"a": a, "b": b})
    assert 'label="a\\n(2,)\\n[1, 2]\\ngrad [4, 5]"' in dot  # d/da (a*b + a) = b + 1
    assert 'label="b\\n(2,)\\n[3, 4]\\ngrad [1, 2]"' in dot
    assert dot.count("grad [") == 2  # intermediates kept no gradient: none is drawn


def test_retain_grads_shows_intermediate_gradients():
    a, b, out = small_expression()
    viz.retain_grads(out)
    out.backward(retain_graph=True)
    assert viz.to_dot(out).count("grad [") == 4 and "grad 1" in viz.to_dot(out)


def test_drawing_a_freed_graph_raises_a_clear_error():
    a, b, out = small_expression()
    out.backward()
    with pytest.raises(RuntimeError, match=r"retain_graph=True.*retain_grad"):
        viz.trace(out)


def test_backward_view_keeps_the_layout_turns_the_arrows_round_and_says_which_way():
    w = Tensor(np.ones((3, 2)), requires_grad=True)
    x = Tensor(np.ones((4, 3)))
    out = (x @ w).sum()
    forward, backward = viz.to_dot(out, legend=False), viz.to_dot(out, view="backward", legend=False)
    ends = [line.split(" [")[0].rstrip(";") for line in edge_lines(forward)]
    assert ends == [line.split(" [")[0].rstrip(";") for line in edge_lines(backward)]  # the same layout
    edges = edge_lines(backward)
    # walk order: w (t0) comes first, x (t1) is met at the MatMul that uses it
    assert 't0 -> op0 [label="grad (3, 2)", dir=back, color="#c0392b", fontcolor="#c0392b"];' in edges  # w's shape
    assert 'op0 -> t2 [label="grad (4, 2)", dir=back, color="#c0392b", fontcolor="#c0392b"];' in edges
    assert 't1 -> op0 [style=dotted, dir=none, color="#aaaaaa"];' in edges  # x needs no gradient
    assert 'label="MatMulBackward"' in backward
    assert "from the output at the bottom back to the leaves at the top" in title_text(backward)  # TB by default
    assert "at the right back to the leaves at the left" in title_text(viz.to_dot(out, view="backward", rankdir="LR"))
    with pytest.raises(ValueError, match="view"):
        viz.to_dot(out, view="sideways")
    with pytest.raises(ValueError, match="rankdir"):
        viz.to_dot(out, rankdir="diagonal")


# ----- simplifications -----

def test_hide_shape_ops_folds_views_into_edges():
    x = Tensor(np.ones((2, 6)), requires_grad=True)
    x.name = "x"
    y = x.reshape(2, 2, 3).permute(0, 2, 1)
    out = (y * 2.0)[:, 0].sum()
    labels = [n.label for n in viz.trace(out).nodes if n.kind == "op"]
    assert labels == ["Reshape", "Permute", "Mul", "Index", "Sum"]
    g = viz.trace(out, hide_shape_ops=True)
    assert [n.label for n in g.nodes if n.kind == "op"] == ["Mul", "Sum"]
    notes = [e.note for e in g.edges if e.note]
    assert notes == ["Reshape → (2, 2, 3)\nPermute dims=0,2,1 → (2, 3, 2)", "Index [:, 0] → (2, 2)"]  # a step a line
    assert g.edges[0].src == "t0"  # x feeds Mul directly
    embedded = Tensor(np.ones((5, 2)), requires_grad=True)[np.array([1, 1, 3])]  # a gather is not a view
    assert [n.label for n in viz.trace(embedded, hide_shape_ops=True).nodes if n.kind == "op"] == ["Index"]


def test_compact_draws_each_op_with_the_tensor_it_makes_and_a_run_of_views_as_one_node():
    x = Tensor(np.ones((2, 6)), requires_grad=True)
    x.name = "x"
    y = x.reshape(2, 2, 3).permute(0, 2, 1)
    y.name = "y"
    out = (y * 2.0)[:, 0].sum()
    g = viz.trace(out, compact=True)
    assert [(n.kind, n.label) for n in g.nodes] == [("tensor", "x"), ("views", ""), ("tensor", ""), ("op", "Mul"),
                                                    ("views", ""), ("op", "Sum"), ("tensor", "")]
    views = [n for n in g.nodes if n.kind == "views"]
    assert views[0].detail == "Reshape → (2, 2, 3)\nPermute dims=0,2,1 → y (2, 3, 2)"
    assert views[0].makes.label == "y"
    mul = next(n for n in g.nodes if n.label == "Mul")
    assert mul.makes.shape == (2, 3, 2) and mul.makes.role == "intermediate"
    assert len(g.edges) == 6  # x -> views -> Mul (and the constant 2) -> views -> Sum -> the output
    dot = viz.to_dot(g, legend=False)
    assert 'label="Mul\\n→ (2, 3, 2)\\n[2, 2] mean 2"' in dot and "shape=ellipse" in dot  # Sum makes the output
    assert "intermediate" not in viz.to_dot(g)  # the legend lists the kinds of node drawn


# ----- modules -----

class Block(nn.Module):
    def __init__(self):
        self.attn = nn.Linear(4, 4)
        self.ff = nn.Linear(4, 4)

    def forward(self, x):
        h = self.attn(x).relu()
        h.name = "h"
        return self.ff(h) + x


class Tiny(nn.Module):
    def __init__(self):
        self.emb = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(4, 3)

    def forward(self, ids):
        x = self.emb(ids) * 2.0
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def recorded_tiny():
    model = Tiny()
    ids = Tensor(np.array([[1, 2, 3]]))
    with viz.record_modules(model) as rec:
        logits = model(ids)
    loss = logits.sum()
    return model, rec, ids, logits, loss


def test_record_modules_assigns_each_tensor_its_innermost_call():
    model, rec, ids, logits, loss = recorded_tiny()
    assert list(rec.calls) == ["", "emb", "blocks.0", "blocks.0.attn", "blocks.0.ff", "blocks.1", "blocks.1.attn",
                               "blocks.1.ff", "head"]
    assert rec.calls["blocks.1.ff"] == ("Linear", "blocks.1")
    g = viz.trace(loss, modules=rec)
    where = {n.label: n.module for n in g.nodes if n.kind == "tensor" and n.label}
    assert where["blocks.0.attn.weight"] == "blocks.0.attn"
    assert where["h"] == "blocks.1"  # the name is set in both blocks; the last wins in this dict
    assert where["index"] is None  # the token ids came from outside the model
    modules = [n.module for n in g.nodes]
    assert modules[-1] is None  # the loss is made outside the model
    assert rec.module_of(logits) == "head"
    ops = {(n.label, n.module) for n in g.nodes if n.kind == "op"}
    assert ("Mul", "") in ops and ("ReLU", "blocks.0") in ops and ("Add", "blocks.1") in ops
    assert ("MatMul", "blocks.0.attn") in ops and ("Index", "emb") in ops


def test_module_clusters_and_parameter_names_appear_in_dot():
    model, rec, ids, logits, loss = recorded_tiny()
    dot = viz.to_dot(loss, modules=rec)
    for name, _ in model.named_parameters():
        assert f'label="{name}\\n' in dot
    assert 'subgraph "cluster_blocks.0" {' in dot and 'label="blocks.0: Block"' in dot
    assert 'subgraph "cluster_blocks.1.ff" {' in dot and 'label="blocks.1.ff: Linear"' in dot
    assert dot.index('subgraph "cluster_blocks.0"') < dot.index('subgraph "cluster_blocks.0.attn"')  # nested


def test_depth_collapses_module_calls_into_boxes():
    model, rec, ids, logits, loss = recorded_tiny()
    g = viz.trace(loss, modules=rec, depth=1)
    boxes = [n for n in g.nodes if n.kind == "module"]
    assert [b.label for b in boxes] == ["emb", "blocks.0", "blocks.1", "head"]
    assert boxes[1].detail == "Block\n40 parameters\n→ (1, 3, 4)"  # the one tensor it passes on, in the box
    assert [n.label for n in g.nodes if n.kind == "op"] == ["Mul", "Sum"]  # the model's own op and the loss
    ends = [(e.src, e.dst) for e in g.edges]
    assert (boxes[1].id, boxes[2].id) in ends and ends.count((boxes[1].id, boxes[2].id)) == 1
    assert [e.note for e in g.edges if e.src == boxes[1].id] == [""]
    whole = viz.trace(logits, modules=rec, depth=0)
    assert [n.label for n in whole.nodes if n.kind == "module"] == ["Tiny"]
    assert [n.role for n in whole.nodes][-1] == "output" and whole.nodes[-1].module is None  # outside the box
    assert "module call" in viz.to_dot(g)
    with pytest.raises(ValueError, match="needs a module"):
        viz.trace(loss, depth=1)


def test_tensors_are_named_after_the_variables_the_code_binds_them_to():
    from tinygrad_attn.nn import MultiHeadAttention
    layer = MultiHeadAttention(4, 4, 3, 0.0, num_heads=2)
    with viz.record_modules(layer) as rec:
        out = layer(Tensor(np.ones((1, 3, 4)), requires_grad=True))
    assert sys.gettrace() is None  # the tracer is gone with the record
    shapes = {}
    for n in viz.trace(out, modules=rec).nodes:
        shapes.setdefault(n.label, []).append(n.shape)
    # first the projection (b, T, d_out), then the same name for its split into heads (b, H, T, head_dim)
    assert shapes["queries"] == shapes["keys"] == shapes["values"] == [(1, 3, 4), (1, 2, 3, 2)]
    assert shapes["attn_scores"] == [(1, 2, 3, 3)] * 2  # before and after the mask: one variable, rebound
    assert shapes["attn_weights"] == [(1, 2, 3, 3)]
    assert shapes["context_vec"] == [(1, 3, 2, 2), (1, 3, 4)]
    assert "x" not in shapes and "t" not in shapes  # parameters and generic names name nothing


def test_record_names_names_a_users_own_code_and_keeps_explicit_names():
    def my_attention(q, k):
        similarity = q @ k.T
        weights = similarity.softmax(-1)
        weights.name = "chosen by hand"
        return weights @ k

    q = Tensor(np.eye(2), requires_grad=True)
    with viz.record_names() as rec:
        out = my_attention(q, q * 2.0)
    labels = [n.label for n in viz.trace(out, names=rec).nodes if n.kind == "tensor"]
    assert "similarity" in labels and "chosen by hand" in labels and "weights" not in labels


def test_a_record_gives_back_the_tensors_bound_to_a_name():
    from tinygrad_attn.nn import CausalAttention
    layer = CausalAttention(4, 4, 3, 0.0)
    with viz.record_names() as rec:
        layer(Tensor(np.ones((1, 3, 4))))
    before, after = rec.tensors("attn_scores")  # the code rebinds it: before and after the mask
    assert np.isfinite(before.numpy()).all() and np.isneginf(after.numpy()).sum() == 3
    assert rec.tensors("no such variable") == []


def test_hooks_are_removed_after_recording():
    model, rec, ids, logits, loss = recorded_tiny()
    before = dict(rec.calls)
    model(ids)
    assert rec.calls == before


# ----- rendering -----

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")


@needs_dot
def test_render_writes_valid_svg_and_png(tmp_path):
    a, b, out = small_expression()
    path = viz.render(out, tmp_path / "expr")
    assert path == tmp_path / "expr.svg" and (tmp_path / "expr.dot").read_text() == viz.to_dot(out)
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg"
    assert sum(1 for g in root.iter(SVG + "g") if g.get("class") == "node") == 8  # the legend is in the label
    assert [t.text for t in root.iter(SVG + "title")][0] == "computation graph"  # a name, not graphviz's %3
    png = viz.render(out, tmp_path / "expr.png", format="png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_without_dot_writes_the_dot_file_and_says_how_to_install_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(render_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(render_module, "_said", set())
    a, b, out = small_expression()
    path = viz.render(out, tmp_path / "expr")
    assert path == tmp_path / "expr.dot" and path.read_text() == viz.to_dot(out)
    assert not (tmp_path / "expr.svg").exists()
    err = capsys.readouterr().err
    assert "sudo apt-get install -y graphviz" in err and "brew install graphviz" in err
    viz.render(out, tmp_path / "again")
    assert capsys.readouterr().err == ""  # once per process, not once per diagram


def test_render_survives_graphviz_not_finding_dot(tmp_path, monkeypatch, capsys):
    graphviz = pytest.importorskip("graphviz")

    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(render_module.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(render_module, "_said", set())
    monkeypatch.setattr(graphviz, "pipe", missing)
    path = viz.render(small_expression()[2], tmp_path / "expr")
    assert path.suffix == ".dot" and path.exists()
    assert "apt-get install -y graphviz" in capsys.readouterr().err


# ----- SVG plots -----

def test_attention_heatmaps_svg(tmp_path):
    rng = np.random.default_rng(0)
    weights = [rng.dirichlet(np.ones(4), size=(2, 4)) for _ in range(3)]  # 3 layers of (2 heads, 4, 4)
    path = viz.attention_heatmaps_svg(weights, ["the", "cat", "<sat>", "&"], tmp_path / "attn.svg", title="attn")
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg"
    texts = [t.text for t in root.iter(SVG + "text")]
    assert texts.count("<sat>") == 3 + 3 * 2  # query labels per layer, key labels under every map
    assert {"layer 0", "layer 2", "head 0", "head 1"} <= set(texts)
    cells = [r for r in root.iter(SVG + "rect") if r.get("width") == "18"]
    assert len(cells) == 3 * 2 * 4 * 4
    assert path.stat().st_size < 60_000
    with pytest.raises(ValueError, match="tokens"):
        viz.attention_heatmaps_svg(weights, ["a", "b"], tmp_path / "bad.svg")


def test_training_curves_svg(tmp_path):
    history = {"train_loss": [2.3, 1.7, 1.1, 0.8, 0.5], "val_loss": [(0, 2.4), (2, 1.3), (4, 0.7)],
               "val_acc": [(0, 0.1), (2, 0.6), (4, float("nan"))], "lr": [1e-3] * 5}
    path = viz.training_curves_svg(history, tmp_path / "curves.svg", title="copy task")
    root = ET.parse(path).getroot()
    texts = [t.text for t in root.iter(SVG + "text")]
    assert {"loss", "accuracy", "lr", "train_loss", "val_loss", "val_acc", "step"} <= set(texts)
    assert len(list(root.iter(SVG + "polyline"))) == 4
    assert "2.5" in texts and "0.0" in texts  # loss ticks 0.0 .. 2.5 step 0.5
    with pytest.raises(ValueError, match="not in history"):
        viz.training_curves_svg(history, tmp_path / "bad.svg", panels={"x": ["nope"]})


def test_training_curves_on_a_log_scale_with_the_legend_under_the_plot(tmp_path):
    history = {"train_loss": [2.0 * 0.9 ** i for i in range(60)], "val_loss": [(0, 2.1), (30, 0.1), (59, 0.0)]}
    path = viz.training_curves_svg(history, tmp_path / "curves.svg", log_y=("loss",))
    root = ET.parse(path).getroot()
    texts = {t.text: t for t in root.iter(SVG + "text")}
    assert "loss (log scale)" in texts and {"0.001", "0.01", "0.1", "1", "10"} <= set(texts)
    frame = next(r for r in root.iter(SVG + "rect") if r.get("fill") == "none")
    bottom = float(frame.get("y")) + float(frame.get("height"))
    assert all(float(texts[k].get("y")) > bottom + 20 for k in history)  # below the axis: no curve runs through it
    assert len(list(root.iter(SVG + "polyline"))) == 2  # val_loss's 0 is left out of a log axis, not drawn at -inf
    with pytest.raises(ValueError, match="log_y"):
        viz.training_curves_svg(history, tmp_path / "bad.svg", log_y=("accuracy",))
    assert viz.plots.log_ticks(0.5, 0.9) == [0.2, 0.5, 1.0]


def test_nice_ticks():
    assert viz.nice_ticks(0.5, 2.4) == ([0.5, 1.0, 1.5, 2.0, 2.5], 0.5)
    assert viz.nice_ticks(0, 4)[0] == [0.0, 1.0, 2.0, 3.0, 4.0]
    ticks, step = viz.nice_ticks(3.0, 3.0)  # a flat line still gets an axis
    assert ticks[0] < 3.0 < ticks[-1]


# ----- the attention layers and the gallery -----

def test_causal_attention_layer_mask_is_named_after_its_buffer():
    from tinygrad_attn.nn.attention import MultiHeadAttentionWrapper
    layer = MultiHeadAttentionWrapper(8, 4, 4, dropout=0.0, num_heads=2)
    x = Tensor(np.random.default_rng(0).standard_normal((1, 4, 8)), requires_grad=True)
    with viz.record_modules(layer) as rec:
        out = layer(x)
    g = viz.trace(out, modules=rec)
    masks = [n for n in g.nodes if n.dtype == "bool"]
    assert [(n.label, n.module) for n in masks] == [("heads.0.mask", "heads.0"), ("heads.1.mask", "heads.1")]
    assert [n.role for n in g.nodes if n.obj is x] == ["input"]  # requires grad, but is no parameter of the layer
    assert {"heads.0", "heads.1", "heads.0.W_query"} <= set(g.clusters)


def test_gallery_diagrams_trace(tmp_path, monkeypatch):
    from tinygrad_attn.viz import gallery
    monkeypatch.setattr(render_module.shutil, "which", lambda name: None)  # DOT text only: fast, no graphviz
    gallery.main(tmp_path)
    for name in [*gallery.RUNGS, *gallery.FIGURES]:
        assert (tmp_path / f"{name}.dot").stat().st_size < 25_000
    model = (tmp_path / "copy_task_model.dot").read_text()
    assert model.count("shape=box3d") == 6  # tok_emb, pos_emb, 2 blocks, final_norm, out_head
    assert 'label="trf_blocks.0\\nTransformerBlock' in model
    mha = (tmp_path / "multihead_attention.dot").read_text()
    for name in ("queries", "keys", "values", "attn_scores", "attn_weights", "context_vec", "mask"):
        assert name in mha
