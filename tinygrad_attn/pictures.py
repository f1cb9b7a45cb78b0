"""Pictures of a training run: `python -m tinygrad_attn.pictures --checkpoint runs/copy`.

Writes into the run directory
    attention.svg   the attention weights of every layer and head on one held-out example
                    (copy: a diagonal shifted by the prompt length; reverse: an anti-diagonal)
    curves.svg      training loss and held-out accuracy against the step
train.py calls write_pictures() at the end of every run; this command redraws them for any
checkpoint. It sits on top of training and drawing; neither knows about it.
"""

import argparse
import math
import os
import sys

import numpy as np

from .data import FIRST_SYMBOL, PAD, SEP, format_symbols
from .runs import describe, load_run_or_exit
from .tensor import Tensor, no_grad
from .viz import attention_heatmaps_svg, training_curves_svg


def token_labels(ids):
    """Token ids as the symbols a user types, with PAD and SEP named."""
    return ["PAD" if t == PAD else "SEP" if t == SEP else str(t - FIRST_SYMBOL) for t in ids]


def finite(xs, ys):
    """The (x, y) points whose y is a finite number: a diverged step's NaN or inf has no place on a curve."""
    return [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]


def write_pictures(out_dir, model, task, history, symbols):
    """Draw attention.svg for the sequence `symbols` (prompt, SEP, answer) and curves.svg; return their paths."""
    idx, _, _ = task.batch([symbols])  # (1, 2L+1): one example, so no padding
    was_training = model.training
    model.eval()
    with no_grad(), np.errstate(over="ignore", invalid="ignore"):  # a diverged model's NaNs are drawn as 0 below
        model(Tensor(idx))
    model.train(was_training)
    weights = [block.att.last_attn_weights.numpy()[0] for block in model.trf_blocks]  # per layer (H, T, T)
    broken = not all(np.isfinite(w).all() for w in weights)  # weights huge enough to overflow (a diverged run)
    attention = os.path.join(out_dir, "attention.svg")
    attention_heatmaps_svg([np.nan_to_num(w, nan=0.0) for w in weights], token_labels(idx[0]), attention,
                           title=f"{task.task} task, {format_symbols(symbols)} ({task.split_of(symbols)}): "
                                 "rows = queries, columns = keys" + ("; NaN drawn as 0" if broken else ""))
    train, evals = history["train"], history["eval"]
    series = {"train loss": finite(train["step"], train["loss"]),
              "held-out exact match": finite(evals["step"], evals["exact_match"]),
              "held-out token accuracy": finite(evals["step"], evals["token_accuracy"])}
    curves = os.path.join(out_dir, "curves.svg")
    training_curves_svg({k: v for k, v in series.items() if v}, curves, title=f"{task.task} task training")
    return attention, curves


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinygrad_attn.pictures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/copy", help="a run directory, or its checkpoint.npz")
    parser.add_argument("--example", default=None, help='the symbols to draw attention for, e.g. "3 1 4 1 5" '
                                                         "(default: a seeded random held-out sequence)")
    args = parser.parse_args(argv)
    model, task, meta = load_run_or_exit(parser, args.checkpoint)
    print(describe(args.checkpoint, meta))
    try:
        symbols = (task.parse(args.example, model.cfg.context_length) if args.example
                   else task.sample(np.random.default_rng(0), 1, "heldout")[0])
    except ValueError as e:
        parser.error(str(e))
    out_dir = args.checkpoint if os.path.isdir(args.checkpoint) else os.path.dirname(args.checkpoint) or "."
    try:
        paths = write_pictures(out_dir, model, task, meta["history"], symbols)
    except OSError as e:
        parser.error(f"cannot write the pictures into {out_dir}: {e}")
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
