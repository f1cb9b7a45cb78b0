"""Every diagram of `make graphs` fits a slide: rendered with graphviz, its aspect ratio is between
0.4 and 2.5 and its smallest text at least 9 px when the picture is shown 1280 px wide. A few
golden diagrams keep the layout deterministic: the DOT text the gallery writes is the committed one."""

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tinygrad_attn.viz import gallery

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
SLIDE_WIDTH, MIN_TEXT_PX, ASPECT = 1280, 9.0, (0.4, 2.5)
GOLDEN = ("autograd_example", "causal_attention", "concept_gqa_sharing")  # a trace, a layer, a conceptual figure

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The gallery drawn into a fresh directory, as `make graphs` draws it."""
    out = tmp_path_factory.mktemp("graphs")
    gallery.main(out)
    return out


def length(text):
    return float(re.match(r"[\d.]+", text).group())


def slide_metrics(path):
    """(aspect ratio, smallest text in px) of an SVG shown SLIDE_WIDTH px wide: font sizes, times the
    scale() of the groups around them, times SLIDE_WIDTH / the width of the viewBox."""
    root = ET.parse(path).getroot()
    width, height = length(root.get("width")), length(root.get("height"))
    view_width = float(root.get("viewBox").split()[2])
    sizes = []

    def walk(element, scale, font):
        found = re.search(r"scale\(([\d.]+)", element.get("transform") or "")
        scale *= float(found.group(1)) if found else 1.0
        font = float(element.get("font-size", font))
        if element.tag == SVG + "text" and (element.text or "").strip():
            sizes.append(font * scale)
        for child in element:
            walk(child, scale, font)

    walk(root, 1.0, 14.0)  # 14: graphviz's default font size
    return width / height, min(sizes) * SLIDE_WIDTH / view_width


def test_slide_metrics_catch_a_picture_too_wide_to_read(tmp_path):
    wide = tmp_path / "wide.svg"
    wide.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="5000pt" height="500pt" viewBox="0 0 5000 500">'
                    '<g transform="scale(1 1)"><text font-size="10">a</text></g></svg>')
    aspect, text_px = slide_metrics(wide)
    assert aspect == 10.0 and text_px == pytest.approx(2.56)  # the old transformer_block: text 2-3 px tall


@needs_dot
@pytest.mark.parametrize("name", [*gallery.RUNGS, *gallery.FIGURES])
def test_every_diagram_fits_a_slide(drawn, name):
    svg = drawn / f"{name}.svg"
    aspect, text_px = slide_metrics(svg)
    assert ASPECT[0] <= aspect <= ASPECT[1], f"{name}: aspect ratio {aspect:.2f}"
    assert text_px >= MIN_TEXT_PX, f"{name}: smallest text {text_px:.1f} px at {SLIDE_WIDTH} px wide"
    assert "<title>%3</title>" not in svg.read_text()  # the graph has a name


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_diagrams_are_the_committed_ones(drawn, name):
    committed = ROOT / "docs" / "graphs" / f"{name}.dot"
    assert (drawn / f"{name}.dot").read_text() == committed.read_text(), \
        f"{name} changed: look at it (make graphs) and commit docs/graphs/{name}.dot if it is right"
