"""Draw an attention layer, the transformer block or a conceptual figure for a slide, without writing Python.

    python -m tinygrad_attn.draw grouped_query_attention --heads 8 --kv-heads 2 --depth 1 --width 1920 -o gqa.png
    python -m tinygrad_attn.draw causal_attention --view backward --rankdir LR
    python -m tinygrad_attn.draw concept_kv_cache -o kv_cache.svg
    make draw ARGS="multihead_attention --heads 4"

Writes the .dot file and the picture beside it (SVG or PNG, from the suffix of -o or from
--format). Without graphviz's `dot` program it says how to install it and writes the .dot only.
"""

import argparse
import sys
from pathlib import Path

from .viz import gallery
from .viz.dot import FLOW
from .viz.rendering import FORMATS, Drawing

SIZES = {"tokens": "number of tokens T", "d_model": "d_in = d_out", "heads": "query heads",
         "kv_heads": "key/value heads (grouped-query attention)", "window": "keys a query sees (sliding window)",
         "latent": "kv_latent_dim (latent attention)"}
LAYER_OPTIONS = ("depth", "rankdir", "view", "data", "show_saved")


def positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def listing():
    """What --help lists: every layer with the sizes it takes, then every other figure."""
    lines = ["layers (drawn from a forward pass at the sizes given):"]
    for name, rung in gallery.RUNGS.items():
        sizes = ", ".join(f"--{k.replace('_', '-')} {'= heads' if v is None else v}"
                          for k, v in gallery.rung_sizes(name).items())
        lines.append(f"  {name:30s} {rung.title.split(':')[0]}; {sizes}")
    lines.append("figures (drawn at their own sizes):")
    lines += [f"  {name:30s} {(make.__doc__ or '').strip().splitlines()[0]}" for name, make in gallery.FIGURES.items()]
    return "\n".join(lines)


def parser():
    p = argparse.ArgumentParser(prog="python -m tinygrad_attn.draw", description=__doc__.split("\n\n")[0],
                                epilog=listing(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=[*gallery.RUNGS, *gallery.FIGURES], metavar="WHAT",
                   help="a layer or a figure, listed below")
    for size, text in SIZES.items():
        p.add_argument(f"--{size.replace('_', '-')}", type=positive, help=f"{text} (each layer has its default)")
    p.add_argument("--depth", type=int, help="collapse module calls this many levels down into boxes (layers)")
    p.add_argument("--rankdir", choices=sorted(FLOW), help="TB: top to bottom (default), LR: left to right")
    p.add_argument("--view", choices=("forward", "backward"), help="backward: the gradients, with their shapes")
    p.add_argument("--data", choices=("summary", "cells", "none"), help="what tensor boxes show besides shapes")
    p.add_argument("--show-saved", action="store_true", default=None, help="the arrays each op keeps for backward")
    p.add_argument("--width", type=positive, help="picture width in pixels (e.g. 1920; the height follows)")
    p.add_argument("--height", type=positive, help="picture height in pixels (with --width: fit inside both)")
    p.add_argument("-o", "--output", help="the picture to write (default WHAT.svg); .png or .svg picks the format")
    p.add_argument("--format", choices=FORMATS, help="svg or png (default: from --output, else svg)")
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    output = Path(args.output or f"{args.what}.{args.format or 'svg'}")
    if output.suffix not in (".svg", ".png"):
        p.error(f"--output {output} must end in .svg or .png")
    if args.format and output.suffix != f".{args.format}":
        p.error(f"--format {args.format} but --output {output}: give one of them")
    sizes = {k: getattr(args, k) for k in SIZES if getattr(args, k) is not None}
    options = {k: getattr(args, k) for k in LAYER_OPTIONS if getattr(args, k) is not None}
    if args.data == "none":
        options["data"] = None
    if args.what in gallery.RUNGS:
        unknown = set(sizes) - set(gallery.rung_sizes(args.what))
        if unknown:
            p.error(f"{args.what} takes no {', '.join('--' + k.replace('_', '-') for k in sorted(unknown))}; "
                    f"it takes {', '.join('--' + k.replace('_', '-') for k in gallery.rung_sizes(args.what))}")
        make = lambda: gallery.draw_rung(args.what, sizes, **options)
    elif sizes or options:
        given = ", ".join("--" + k.replace("_", "-") for k in [*sizes, *options])
        p.error(f"{args.what} is drawn at its own sizes; {given}: only for the layers")
    else:
        make = gallery.FIGURES[args.what]
    try:
        drawing = make()
    except ValueError as e:  # sizes a layer rejects: d_model not divisible by heads, ...
        p.error(str(e))
    if args.width or args.height:
        drawing = Drawing(drawing.dot, (args.width, args.height), drawing.graph)
    path = drawing.save(output)
    print(f"wrote {path}")
    return 0 if path.suffix == output.suffix else 1  # 1: graphviz is missing, only the .dot was written


if __name__ == "__main__":
    sys.exit(main())
