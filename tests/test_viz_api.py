"""The two entry points: viz.draw (this project's pictures, a Drawing) and viz.make_dot (torchviz's call),
both shown inline by Jupyter; saved arrays; sizes."""

import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tinygrad_attn import Tensor, fused_ops, manual_seed, nn, randn, viz
from tinygrad_attn.nn import attention
from tinygrad_attn.viz import gallery
from tinygrad_attn.viz import rendering as render_module

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def small_model():
    manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2))
    return model, randn(5, 3)


# ----- draw -----

def test_a_users_own_drawing_reads_like_the_gallerys():
    manual_seed(0)
    from_gallery = gallery.draw_rung("multihead_attention")
    manual_seed(0)
    layer = attention.MultiHeadAttention(8, 8, 4, 0.0, num_heads=2)  # what the rung builds, by hand
    mine = viz.draw(layer, randn(1, 4, 8), depth=1, title=gallery.RUNGS["multihead_attention"].title.format(heads=2))
    assert mine.dot == from_gallery.dot  # same names, same grouping, same picture
    for name in ("queries", "keys", "values", "attn_scores", "attn_weights", "context_vec", "W_query"):
        assert name in mine.dot


def test_draw_names_the_inputs_after_the_parameters_they_are_passed_as():
    def attend(query, key):
        similarity = query @ key.transpose(-2, -1)
        return similarity.softmax(-1)

    g = viz.draw(attend, np.ones((2, 3)), np.ones((2, 3))).graph
    tensors = {n.label: n.role for n in g.nodes if n.kind == "tensor"}
    assert tensors["query"] == tensors["key"] == "input"  # made to require a gradient, still drawn as inputs
    assert "similarity" in [n.makes.label for n in g.nodes if n.makes is not None]
    with pytest.raises(TypeError, match="Module, a function or Tensors"):
        viz.draw(42)
    with pytest.raises(TypeError, match="drawn as they are"):
        viz.draw(Tensor([1.0], requires_grad=True), np.ones(2))


def test_draw_backward_projects_on_random_weights_and_leaves_the_models_gradients_alone():
    model, x = small_model()
    d = viz.draw(model, x, view="backward")
    assert all(p.grad is None for p in model.parameters())  # drawing is not training
    labels = [n.label for n in d.graph.nodes]
    assert labels[-1] == "loss" and any(label.startswith("random weights r") for label in labels)
    assert "hide a wrong one" in d.dot  # the figure says why it is not .sum()
    params = [n for n in d.graph.nodes if n.role == "parameter"]
    assert params and all(n.grad is not None and n.grad.shape == n.shape for n in params)
    assert "dir=back" in d.dot and "grad (5, 2)" in d.dot


def test_show_saved_lists_the_arrays_ops_keep_for_backward_with_their_sizes():
    a = Tensor(np.ones((4, 8), dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones((4, 8), dtype=np.float32))
    out = (a * b).exp().sum()
    g = viz.trace(out)
    mul, exp = (n for n in g.nodes if n.label in ("Mul", "Exp"))
    assert [(k, what) for k, _, what in mul.saved] == [("a", "input 0"), ("b", "input 1")]  # its inputs themselves
    assert [(k, arr.nbytes, what) for k, arr, what in exp.saved] == [("out", 128, "output")]  # and its output
    dot = viz.to_dot(out, show_saved=True)
    assert "saved for backward:\\na (4, 8) 128 B (input 0)" in dot and "out (4, 8) 128 B" in dot
    caption = " ".join(re.findall(r"<TD>([^<]*)</TD>", dot))
    assert "saved for backward: 3 arrays; 0 B of them are new" in caption
    dropped = nn.Dropout(0.5)(a)  # the mask is a new array, memory of its own
    caption = " ".join(re.findall(r"<TD>([^<]*)</TD>", viz.to_dot(dropped, show_saved=True)))
    assert "1 array; 128 B of them are new" in caption
    assert "saved for backward" not in viz.to_dot(out)


# ----- make_dot, as torchviz -----

def test_make_dot_is_torchvizs_call_and_returns_a_digraph():
    graphviz = pytest.importorskip("graphviz")
    model, x = small_model()
    assert "LinearBackward" in viz.make_dot(model(x).sum()).source  # the ops that ran: the fused ones
    with fused_ops(False):
        y = model(x).sum()
    g = viz.make_dot(y, params=dict(model.named_parameters()))
    assert isinstance(g, graphviz.Digraph)
    assert "MatMulBackward" in g.source and "GELUBackward" in g.source  # the backward graph, op by op
    for name, p in model.named_parameters():
        assert f'label="{name}\\n{p.shape}"' in g.source  # params= names the leaves
    assert "grad (5, 2)" in g.source and "[-" not in g.source  # shapes, no data, as torchviz
    assert "Permute" in g.source  # views too: torchviz draws every op
    assert "dim=" not in viz.make_dot(model(x).softmax(-1).sum()).source
    assert "dim=1" in viz.make_dot(model(x).softmax(-1).sum(), show_attrs=True).source
    assert "saved for backward" in viz.make_dot(y, show_saved=True).source
    assert viz.make_dot((y, model(x).mean())).source.count("fillcolor=\"#a1d99b\"") == 2  # a tuple of outputs


@needs_dot
def test_make_dot_displays_in_jupyter_and_renders(tmp_path):
    model, x = small_model()
    g = viz.make_dot(model(x).sum())
    bundle = g._repr_mimebundle_()
    assert "<svg" in bundle["image/svg+xml"]
    path = g.render(tmp_path / "model", format="png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


# ----- Drawing: Jupyter, SVG, PNG at a width -----

@needs_dot
def test_drawing_displays_in_jupyter_and_saves_svg_and_png_at_a_chosen_width(tmp_path):
    model, x = small_model()
    d = viz.draw(model, x)
    svg = d._repr_svg_()
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg" and "%3" not in svg
    assert d.save(tmp_path / "m.svg") == tmp_path / "m.svg" and (tmp_path / "m.dot").exists()
    wide = viz.Drawing(d.dot, size=(1920, None))
    png = wide.save(tmp_path / "m.png")
    width, height = (int.from_bytes(png.read_bytes()[16 + 4 * k:20 + 4 * k], "big") for k in (0, 1))
    assert abs(width - 1920) <= 2  # graphviz rounds to whole pixels
    boxed = viz.Drawing(d.dot, size=(800, 200)).png()  # fits inside both
    w, h = (int.from_bytes(boxed[16 + 4 * k:20 + 4 * k], "big") for k in (0, 1))
    assert w <= 802 and h <= 202 and (abs(w - 800) <= 2 or abs(h - 200) <= 2)


def test_drawing_without_graphviz_shows_its_repr_and_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(render_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(render_module, "_said", set())
    model, x = small_model()
    d = viz.draw(model, x)
    assert d._repr_svg_() is None  # Jupyter falls back to repr()
    assert "Drawing" in repr(d) and ".save(" in repr(d)
    assert "apt-get install -y graphviz" in capsys.readouterr().err
    with pytest.raises(viz.rendering.GraphvizMissing, match="brew install graphviz"):
        d.svg()


def test_drawing_sizes_are_checked():
    for bad in [(0, 100), (None, None), (100,), (-5, None)]:
        with pytest.raises(ValueError, match="size"):
            viz.Drawing("digraph {}\n", size=bad)
    assert 'size="20,2!", dpi=96' in viz.Drawing('digraph "x" {\n}\n', size=(1920, 192)).source
