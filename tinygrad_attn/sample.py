"""Ask a trained model to copy: `python -m tinygrad_attn.sample --checkpoint runs/copy "3 1 4 1 5"`.

Loads the run's checkpoint, rebuilds the model from the configuration stored in it, and
decodes the answer greedily with the KV cache, exactly as the held-out evaluation does. It
first says which step the checkpoint is of and whether its run finished, and it labels every
sequence as the training saw it: held out, training split, or outside the trained lengths.
"""

import argparse
import sys

from .data import format_symbols
from .runs import describe, evaluate, load_run_or_exit


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinygrad_attn.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/copy", help="a run directory, or its checkpoint.npz")
    parser.add_argument("symbols", nargs="+", help='a sequence of symbols such as "3 1 4 1 5"; give several to '
                                                   "decode several")
    args = parser.parse_args(argv)
    model, task, meta = load_run_or_exit(parser, args.checkpoint)
    sequences = []
    for text in args.symbols:
        try:
            sequences.append(task.parse(text, model.cfg.context_length))
        except ValueError as e:
            parser.error(str(e))

    print(describe(args.checkpoint, meta))
    _, predictions = evaluate(model, task, sequences)
    for symbols, pred in zip(sequences, predictions):
        right = (pred == task.answer(symbols)).all()
        print(f"{format_symbols(symbols)} -> {format_symbols(pred)}  {'✓' if right else '✗'}  "
              f"({task.split_of(symbols)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
