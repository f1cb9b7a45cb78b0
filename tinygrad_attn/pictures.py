"""Pictures of a training run: `python -m tinygrad_attn.pictures --checkpoint runs/copy`.

Writes into the run directory
    attention.svg   the attention weights of every layer and head on one held-out example
                    (copy: a diagonal shifted by the prompt length; reverse: an anti-diagonal)
    curves.svg      training loss and held-out accuracy against the step
train.py calls write_pictures() at the end of every run; this command redraws them for any
checkpoint. It sits on top of training and drawing; neither knows about it.
"""

import argparse
import os
import sys

import numpy as np

from .data import FIRST_SYMBOL, PAD, SEP
from .runs import load_run_or_exit
from .tensor import Tensor, no_grad
from .viz import attention_heatmaps_svg, training_curves_svg


def token_labels(ids):
    """Token ids as the symbols a user types, with PAD and SEP named."""
    return ["PAD" if t == PAD else "SEP" if t == SEP else str(t - FIRST_SYMBOL) for t in ids]


def write_pictures(out_dir, model, task, history, symbols):
    """Draw attention.svg for the sequence `symbols` (prompt, SEP, answer) and curves.svg; return their paths."""
    idx, _, _ = task.batch([symbols])  # (1, 2L+1): one example, so no padding
    was_training = model.training
    model.eval()
    with no_grad():
        model(Tensor(idx))
    model.train(was_training)
    weights = [block.att.last_attn_weights.numpy()[0] for block in model.trf_blocks]  # per layer (H, T, T)
    attention = os.path.join(out_dir, "attention.svg")
    attention_heatmaps_svg(weights, token_labels(idx[0]), attention,
                           title=f"{task.task} task, held-out example: rows = queries, columns = keys")
    train, evals = history["train"], history["eval"]
    series = {"train loss": list(zip(train["step"], train["loss"])),
              "held-out exact match": list(zip(evals["step"], evals["exact_match"])),
              "held-out token accuracy": list(zip(evals["step"], evals["token_accuracy"]))}
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
    try:
        symbols = (task.parse(args.example, model.cfg.context_length) if args.example
                   else task.sample(np.random.default_rng(0), 1, "heldout")[0])
    except ValueError as e:
        parser.error(str(e))
    out_dir = args.checkpoint if os.path.isdir(args.checkpoint) else os.path.dirname(args.checkpoint) or "."
    for path in write_pictures(out_dir, model, task, meta["history"], symbols):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
