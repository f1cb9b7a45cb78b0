"""Pictures of a training run: `python -m tinygrad_attn.pictures --checkpoint runs/copy`.

Writes into the run directory
    attention.svg   the attention weights of every layer and head on one held-out example
                    (copy: a diagonal shifted by the prompt length; reverse: an anti-diagonal;
                    text: the first tokens of a held-out document)
    curves.svg      training loss and the held-out figures against the step (loss on a log scale)
train.py calls write_pictures() at the end of every run; this command redraws them for any
checkpoint. It sits on top of training and drawing; neither knows about it.
"""

import argparse
import math
import os
import sys

import numpy as np

from .data import format_symbols
from .runs import describe, load_run_or_exit
from .tensor import Tensor, no_grad
from .text import TextTask
from .viz import attention_heatmaps_svg, training_curves_svg

TEXT_EXAMPLE_TOKENS = 24  # a heatmap of more tokens than this has unreadable labels


def example(task, context_length, given=None):
    """What to draw attention for: token ids (1, T) and their name in the title.

    given: the user's symbols ("3 1 4") or text; by default a seeded held-out sequence, or the
    first tokens of the held-out documents. ValueError for symbols or text that the task cannot
    take or that do not fit in the model's context_length.
    """
    if isinstance(task, TextTask):
        ids = task.tokenizer.encode(given) if given else task.heldout_ids[:min(TEXT_EXAMPLE_TOKENS, context_length)].tolist()
        if not 1 <= len(ids) <= context_length:
            raise ValueError(f"the example must be 1 to {context_length} tokens (the model's context), got {len(ids)}")
        return np.array([ids]), "your text" if given else "held-out text"
    symbols = task.parse(given, context_length) if given else task.sample(np.random.default_rng(0), 1, "heldout")[0]
    idx, _, _ = task.batch([symbols])  # (1, 2L): one example, so no padding
    return idx, f"{format_symbols(symbols)} ({task.split_of(symbols)})"


def finite(xs, ys):
    """The (x, y) points whose y is a finite number: a diverged step's NaN or inf has no place on a curve."""
    return [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]


def write_pictures(out_dir, model, task, history, idx, name):
    """Draw attention.svg for the token ids idx (1, T), called `name` in its title, and curves.svg;
    return their paths."""
    was_training = model.training
    model.eval()
    with no_grad(), np.errstate(over="ignore", invalid="ignore"):  # a diverged model's NaNs are drawn as 0 below
        model(Tensor(idx))
    model.train(was_training)
    weights = [block.att.last_attn_weights.numpy()[0] for block in model.trf_blocks]  # per layer (H, T, T)
    broken = not all(np.isfinite(w).all() for w in weights)  # weights huge enough to overflow (a diverged run)
    attention = os.path.join(out_dir, "attention.svg")
    kind = "text" if isinstance(task, TextTask) else task.task
    attention_heatmaps_svg([np.nan_to_num(w, nan=0.0) for w in weights], task.token_labels(idx[0]), attention,
                           title=f"{kind} task, {name}: rows = queries, columns = keys"
                                 + ("; NaN drawn as 0" if broken else ""))
    train, evals = history["train"], history["eval"]
    series = {"train loss": finite(train["step"], train["loss"])}
    series.update({f"held-out {key.replace('_', ' ')}": finite(evals["step"], evals[key])
                   for key in evals if key != "step"})
    curves = os.path.join(out_dir, "curves.svg")
    training_curves_svg({k: v for k, v in series.items() if v}, curves, title=f"{kind} task training",
                        log_y=("loss",))
    return attention, curves


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinygrad_attn.pictures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/copy", help="a run directory, or its checkpoint.npz")
    parser.add_argument("--example", default=None, help='the symbols to draw attention for, e.g. "3 1 4 1 5", or '
                                                         "the text (default: a seeded random held-out sequence, or "
                                                         "the start of the held-out text)")
    args = parser.parse_args(argv)
    model, task, meta = load_run_or_exit(parser, args.checkpoint)
    print(describe(args.checkpoint, meta))
    try:
        idx, name = example(task, model.cfg.context_length, args.example)
    except ValueError as e:
        parser.error(str(e))
    out_dir = args.checkpoint if os.path.isdir(args.checkpoint) else os.path.dirname(args.checkpoint) or "."
    try:
        paths = write_pictures(out_dir, model, task, meta["history"], idx, name)
    except OSError as e:
        parser.error(f"cannot write the pictures into {out_dir}: {e}")
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
