"""python -m tinygrad_attn.draw: any layer at any size, or a figure; bad options are one-line errors."""

import shutil

import pytest

from tinygrad_attn import draw
from tinygrad_attn.viz import gallery
from tinygrad_attn.viz import rendering as render_module

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_help_lists_everything_it_can_draw(capsys):
    with pytest.raises(SystemExit) as exit:
        draw.main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for name in [*gallery.RUNGS, *gallery.FIGURES]:
        assert f"  {name} " in out
    assert "--heads 4, --kv-heads 2" in out  # each layer's own sizes


@pytest.mark.parametrize("argv, message", [
    (["sliding_window"], "invalid choice: 'sliding_window'"),
    (["multihead_attention", "--kv-heads", "2"], "multihead_attention takes no --kv-heads"),
    (["multihead_attention", "--heads", "3"], "d_out=8 must be divisible by num_heads=3"),
    (["grouped_query_attention", "--kv-heads", "3"], "num_heads=4 must be divisible by num_kv_heads=3"),
    (["causal_attention", "--tokens", "0"], "0 must be at least 1"),
    (["causal_attention", "--depth", "-1"], "depth must be an int >= 0"),
    (["causal_attention", "-o", "x.jpg"], "must end in .svg or .png"),
    (["causal_attention", "-o", "x.svg", "--format", "png"], "give one of them"),
    (["concept_kv_cache", "--heads", "2"], "drawn at its own sizes; --heads"),
    (["simple_self_attention", "--depth", "1"], "needs a module"),
])
def test_bad_options_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        draw.main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("python -m tinygrad_attn.draw: error:")
    assert "Traceback" not in "\n".join(err)


def test_without_graphviz_it_writes_the_dot_file_and_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(render_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(render_module, "_said", set())
    assert draw.main(["causal_attention", "-o", str(tmp_path / "ca.png")]) == 1
    assert (tmp_path / "ca.dot").exists() and not (tmp_path / "ca.png").exists()
    captured = capsys.readouterr()
    assert "sudo apt-get install -y graphviz" in captured.err and f"wrote {tmp_path / 'ca.dot'}" in captured.out


@needs_dot
def test_grouped_query_attention_8_by_2_top_to_bottom_as_a_1920_px_png(tmp_path):
    out = tmp_path / "gqa.png"
    assert draw.main(["grouped_query_attention", "--heads", "8", "--kv-heads", "2", "--d-model", "16",
                      "--depth", "1", "--rankdir", "TB", "--width", "1920", "-o", str(out)]) == 0
    assert abs(png_size(out)[0] - 1920) <= 2
    dot = (tmp_path / "gqa.dot").read_text()
    assert "2 key/value heads, each shared by 4 of the" in dot and "<TD>8 query heads" in dot and "rankdir=TB" in dot
    assert "W_query\\nLinear\\n256 parameters" in dot  # 16 -> 8 heads of head_dim 2
    assert "W_key\\nLinear\\n64 parameters" in dot  # 16 -> 2 heads of head_dim 2: a quarter of it


@needs_dot
def test_backward_view_and_figures(tmp_path):
    assert draw.main(["transformer_block", "--view", "backward", "--rankdir", "LR", "-o", str(tmp_path / "b.svg")]) == 0
    assert "dir=back" in (tmp_path / "b.dot").read_text() and (tmp_path / "b.svg").stat().st_size > 0
    assert draw.main(["concept_gqa_sharing", "--width", "1280", "-o", str(tmp_path / "g.png")]) == 0
    assert abs(png_size(tmp_path / "g.png")[0] - 1280) <= 2
