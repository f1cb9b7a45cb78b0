"""Pictures from training, written as SVG text by hand: attention heatmaps and training curves.

Why not matplotlib: the project depends on numpy alone, and a plot is a few hundred
rectangles and lines. Written by hand, the files are small, byte-for-byte deterministic
(the same numbers give the same file) and plain text, so a committed picture diffs and
changes only when the numbers do. Both functions take numpy arrays (or lists) and a path,
and return the Path written.
"""

import math
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

FONT = 'font-family="Helvetica, Arial, sans-serif" font-size="11"'
# viridis at 0, 1/8, ..., 1: perceptually uniform, readable in grey and by most colour-blind readers
VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
LINE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _n(x):
    """A coordinate with at most one decimal: short and deterministic."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _text(x, y, s, anchor="start", extra=""):
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{extra}>{escape(str(s))}</text>'


def _svg(width, height, body):
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
            f'viewBox="0 0 {_n(width)} {_n(height)}" {FONT}>')
    return "\n".join([head, f'<rect width="{_n(width)}" height="{_n(height)}" fill="white"/>', *body, "</svg>"]) + "\n"


def _write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def viridis(v):
    """viridis colour of v in [0, 1], interpolated linearly between the anchors."""
    v = min(max(float(v), 0.0), 1.0) * (len(VIRIDIS) - 1)
    i = min(int(v), len(VIRIDIS) - 2)
    a, b = (np.array([int(c[k:k + 2], 16) for k in (1, 3, 5)]) for c in VIRIDIS[i:i + 2])
    r, g, bl = np.rint(a + (b - a) * (v - i)).astype(int)
    return f"#{r:02x}{g:02x}{bl:02x}"


def nice_ticks(lo, hi, count=5):
    """Round tick values covering [lo, hi], about `count` of them, steps of 1, 2, 2.5 or 5 times 10^k."""
    if not hi > lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [k * step for k in range(first, last + 1)], step


def _tick_text(v, step):
    """v with as many decimals as the step needs (0.25 -> 2, 20 -> 0)."""
    decimals = len(f"{step:.10f}".rstrip("0").split(".")[1])
    return f"{v:.{decimals}f}"


# ---------------------------------------------------------------------------------------
# Attention heatmaps
# ---------------------------------------------------------------------------------------

def attention_heatmaps_svg(weights, tokens, path, title=None, vmax=None, cell=18):
    """A grid of attention maps, one row per layer and one column per head, for one example.

    weights: a list with one (H, T_q, T_k) array per layer (or an array (L, H, T_q, T_k) or
      (H, T_q, T_k)); tokens: the T_k key tokens as strings (queries are the last T_q of them).
    Row i of a map is the query at token i, column j the key at token j. One colour scale
    (0 to vmax, default the largest weight) is shared by all maps and drawn on the right.
    """
    weights = [np.asarray(w, dtype=np.float64) for w in ([weights] if np.ndim(weights) == 3 else weights)]
    if not weights or any(w.ndim != 3 or w.shape != weights[0].shape for w in weights):
        raise ValueError(f"attention weights must be (H, T_q, T_k) arrays of one shape per layer, got shapes "
                         f"{[w.shape for w in weights]}")
    n_heads, t_q, t_k = weights[0].shape
    tokens = [str(s) for s in tokens]
    if len(tokens) != t_k or t_q > t_k:
        raise ValueError(f"{len(tokens)} tokens for attention maps of {t_q} queries x {t_k} keys: pass the {t_k} "
                         "key tokens")
    vmax = float(max(w.max() for w in weights)) if vmax is None else float(vmax)
    vmax = vmax if vmax > 0 else 1.0
    label_w = 7 * max(len(s) for s in tokens) + 8  # room for the token labels (about 7 px a character)
    left, top, gap = 24 + label_w, 44 if title else 26, 16
    panel_w, panel_h = t_k * cell, t_q * cell
    grid_w = n_heads * panel_w + (n_heads - 1) * gap
    grid_h = len(weights) * panel_h + (len(weights) - 1) * (gap + label_w)
    bar_x = left + grid_w + 24
    width, height = bar_x + 60, top + grid_h + label_w + 24
    body = [_text(left, 18, title, extra=' font-size="13" font-weight="bold"')] if title else []
    for layer, w in enumerate(weights):
        y0 = top + layer * (panel_h + gap + label_w)
        body.append(_text(12, y0 + panel_h / 2, f"layer {layer}", "middle",
                          f' transform="rotate(-90 12 {_n(y0 + panel_h / 2)})"'))
        for i, s in enumerate(tokens[t_k - t_q:]):  # query labels on the left of the row
            body.append(_text(left - 4, y0 + (i + 0.7) * cell, s, "end"))
        for h in range(n_heads):
            x0 = left + h * (panel_w + gap)
            if layer == 0:
                body.append(_text(x0 + panel_w / 2, top - 8, f"head {h}", "middle"))
            for i in range(t_q):
                for j in range(t_k):
                    body.append(f'<rect x="{_n(x0 + j * cell)}" y="{_n(y0 + i * cell)}" width="{cell}" '
                                f'height="{cell}" fill="{viridis(w[h, i, j] / vmax)}"/>')
            for j, s in enumerate(tokens):  # key labels below, read upwards
                x, y = x0 + (j + 0.7) * cell, y0 + panel_h + 4
                body.append(_text(x, y, s, "end", f' transform="rotate(-90 {_n(x)} {_n(y)})"'))
    body += _colour_bar(bar_x, top, min(grid_h, 160), vmax)
    body.append(_text(left + grid_w / 2, height - 6, "key (attended to); rows: query", "middle"))
    return _write(path, _svg(width, height, body))


def _colour_bar(x, y, h, vmax):
    stops = "".join(f'<stop offset="{_n(100 * k / (len(VIRIDIS) - 1))}%" stop-color="{c}"/>'
                    for k, c in enumerate(VIRIDIS))
    out = [f'<defs><linearGradient id="scale" x1="0" y1="1" x2="0" y2="0">{stops}</linearGradient></defs>',
           f'<rect x="{_n(x)}" y="{_n(y)}" width="12" height="{_n(h)}" fill="url(#scale)" stroke="#333"/>']
    for v in (0.0, vmax / 2, vmax):
        ty = y + h - h * v / vmax
        out.append(f'<line x1="{_n(x + 12)}" y1="{_n(ty)}" x2="{_n(x + 16)}" y2="{_n(ty)}" stroke="#333"/>')
        out.append(_text(x + 18, ty + 4, f"{v:.2g}"))
    return out


# ---------------------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------------------

def _points(series):
    """(step, value) pairs from a list of values (step = index) or of (step, value) pairs; drops NaN/inf."""
    pts = [(float(p[0]), float(p[1])) if np.ndim(p) == 1 else (float(i), float(p)) for i, p in enumerate(series)]
    return [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]


def _default_panels(keys):
    """Losses share a panel, accuracies (names with "acc" or "match") another, anything else gets its own."""
    panels = {}
    for k in keys:
        kind = "loss" if "loss" in k.lower() else "accuracy" if "acc" in k.lower() or "match" in k.lower() else k
        panels.setdefault(kind, []).append(k)
    return panels


def log_ticks(lo, hi):
    """Tick values for a log axis covering [lo, hi] (both > 0): the powers of 10, and 2 and 5 times
    them when the range spans fewer than three decades."""
    first, last = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    last = max(last, first + 1)
    steps = (1, 2, 5) if last - first < 3 else (1,)
    ticks = [m * 10.0 ** k for k in range(first, last + 1) for m in steps]
    inside = [t for t in ticks if lo <= t <= hi]
    below, above = [t for t in ticks if t < lo], [t for t in ticks if t > hi]
    return ([below[-1]] if below else []) + inside + ([above[0]] if above else [])


def training_curves_svg(history, path, title=None, panels=None, panel_size=(360, 240), log_y=()):
    """Line plots of training metrics, side by side, with axes, ticks and a legend under each panel.

    history: {name: values}, values a list of numbers (x = their index) or of (step, value)
      pairs (for metrics measured every few steps). NaN and inf points are skipped.
    panels: {panel title: [names]}; by default names with "loss" share one panel, names with
      "acc" or "match" (token_accuracy, exact_match) another, and every other name gets its own.
    log_y: the titles of the panels drawn with a logarithmic y axis, e.g. ("loss",): a loss
      falling from 2 to 0.001 then shows its late progress; points <= 0 are skipped there.
    """
    if not history:
        raise ValueError("training_curves_svg needs at least one series in history")
    panels = _default_panels(list(history)) if panels is None else panels
    missing = [k for ks in panels.values() for k in ks if k not in history]
    if missing:
        raise ValueError(f"panels name series {missing} that are not in history (keys: {list(history)})")
    unknown = [p for p in log_y if p not in panels]
    if unknown:
        raise ValueError(f"log_y names panels {unknown} that are not drawn (panels: {list(panels)})")
    pw, ph = panel_size
    top, legend_rows = 30 if title else 10, max(len(keys) for keys in panels.values())
    width, height = 20 + len(panels) * (pw + 20), top + ph + 14 * legend_rows + 20
    body = [_text(20, 20, title, extra=' font-size="13" font-weight="bold"')] if title else []
    colours = {k: LINE_COLOURS[i % len(LINE_COLOURS)] for i, k in enumerate(history)}
    for p, (name, keys) in enumerate(panels.items()):
        series = {k: [(x, y) for x, y in _points(history[k]) if y > 0 or name not in log_y] for k in keys}
        body += _panel(20 + p * (pw + 20), top, pw, ph, name, series, colours, name in log_y)
    return _write(path, _svg(width, height, body))


def _panel(x0, y0, w, h, name, series, colours, log):
    """One panel: the frame (plot area inset for tick labels), ticks, grid lines, curves, and the
    legend under the axis, where no curve can run through it."""
    px0, px1, py0, py1 = x0 + 50, x0 + w - 10, y0 + 20, y0 + h - 36  # the plot area
    pts = [pt for s in series.values() for pt in s]
    out = [_text((px0 + px1) / 2, y0 + 12, name + (" (log scale)" if log else ""), "middle", ' font-weight="bold"')]
    if not pts:
        return out + [_text((px0 + px1) / 2, (py0 + py1) / 2, "no finite values", "middle")]
    xticks, xstep = nice_ticks(min(x for x, _ in pts), max(x for x, _ in pts))
    lo, hi = min(y for _, y in pts), max(y for _, y in pts)
    ty = math.log10 if log else (lambda v: v)  # the y axis is linear in ty(y)
    yticks, ystep = (log_ticks(lo, hi), None) if log else nice_ticks(lo, hi)

    def sx(x):
        return px0 + (x - xticks[0]) / (xticks[-1] - xticks[0]) * (px1 - px0)

    def sy(y):
        return py1 - (ty(y) - ty(yticks[0])) / (ty(yticks[-1]) - ty(yticks[0])) * (py1 - py0)

    for v in xticks:
        out.append(f'<line x1="{_n(sx(v))}" y1="{_n(py0)}" x2="{_n(sx(v))}" y2="{_n(py1 + 4)}" stroke="#ddd"/>')
        out.append(_text(sx(v), py1 + 16, _tick_text(v, xstep), "middle"))
    for v in yticks:
        out.append(f'<line x1="{_n(px0 - 4)}" y1="{_n(sy(v))}" x2="{_n(px1)}" y2="{_n(sy(v))}" stroke="#ddd"/>')
        out.append(_text(px0 - 6, sy(v) + 4, f"{v:g}" if log else _tick_text(v, ystep), "end"))
    out.append(f'<rect x="{_n(px0)}" y="{_n(py0)}" width="{_n(px1 - px0)}" height="{_n(py1 - py0)}" '
               'fill="none" stroke="#333"/>')
    out.append(_text((px0 + px1) / 2, py1 + 32, "step", "middle"))
    for i, (key, s) in enumerate(series.items()):
        colour = colours[key]
        if len(s) == 1:
            out.append(f'<circle cx="{_n(sx(s[0][0]))}" cy="{_n(sy(s[0][1]))}" r="2.5" fill="{colour}"/>')
        elif s:
            coords = " ".join(f"{_n(sx(x))},{_n(sy(y))}" for x, y in s)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        ly = py1 + 50 + 14 * i
        out.append(f'<line x1="{_n(px0)}" y1="{_n(ly - 4)}" x2="{_n(px0 + 16)}" y2="{_n(ly - 4)}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(_text(px0 + 20, ly, key))
    return out
