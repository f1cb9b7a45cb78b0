"""Ask a trained model: `python -m tinygrad_attn.sample --checkpoint runs/copy "3 1 4 1 5"` to copy,
or `python -m tinygrad_attn.sample --checkpoint runs/text --prompt "The for statement"` to write.

Loads the run's checkpoint and rebuilds the model from the configuration stored in it. A copy
run decodes the answer greedily with the KV cache, exactly as the held-out evaluation does, and
labels every sequence as the training saw it: held out, training split, or outside the trained
lengths. A text run continues the prompt token by token, printing each as it is drawn
(temperature, top-k and top-p sampling, seeded; temperature 0 is greedy), with the KV cache
while the text fits the model's context and the book's sliding window after. Either first says
which step the checkpoint is of and whether its run finished.
"""

import argparse
import sys

from .data import format_symbols
from .runs import describe, evaluate, load_run_or_exit, write_text
from .tensor import manual_seed
from .text import TextTask


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tinygrad_attn.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="runs/copy", help="a run directory, or its checkpoint.npz")
    p.add_argument("symbols", nargs="*", help='copy runs: a sequence of symbols such as "3 1 4 1 5"; give several '
                                              "to decode several")
    g = p.add_argument_group("text runs")
    g.add_argument("--prompt", help="the text to continue")
    g.add_argument("--max-new-tokens", type=int, default=200, help="tokens to write (default: 200)")
    g.add_argument("--temperature", type=float, default=0.8, help="0 is greedy; higher is more varied (default: 0.8)")
    g.add_argument("--top-k", type=int, default=None, help="draw among the k most likely tokens only")
    g.add_argument("--top-p", type=float, default=None, help="draw among the most likely tokens whose probability "
                                                             "reaches p only (nucleus sampling)")
    g.add_argument("--seed", type=int, default=0, help="seeds the sampling (default: 0)")
    return p


def copy(parser, args, model, task):
    """Decode each sequence of symbols and say whether the answer is right."""
    if not args.symbols or args.prompt is not None:
        parser.error("a copy run takes symbols such as \"3 1 4 1 5\", not --prompt")
    sequences = []
    for text in args.symbols:
        try:
            sequences.append(task.parse(text, model.cfg.context_length))
        except ValueError as e:
            parser.error(str(e))
    _, predictions = evaluate(model, task, sequences)
    for symbols, pred in zip(sequences, predictions):
        right = (pred == task.answer(symbols)).all()
        print(f"{format_symbols(symbols)} -> {format_symbols(pred)}  {'✓' if right else '✗'}  "
              f"({task.split_of(symbols)})")


def write(parser, args, model, task):
    """Print the prompt, then each new token as the model draws it."""
    if args.prompt is None or args.symbols:
        parser.error('a text run takes --prompt "some text", not symbols')
    try:
        prompt = task.tokenizer.encode(args.prompt)
    except ValueError as e:  # a character the tokenizer was not trained on
        parser.error(f"the prompt cannot be encoded: {e}")
    context = model.cfg.context_length
    if not 1 <= len(prompt) <= context:
        parser.error(f"the prompt is {len(prompt)} tokens; it must be 1 to {context} (the model's context_length)")
    if args.max_new_tokens < 0:
        parser.error(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    manual_seed(args.seed)
    try:
        pieces = write_text(model, task, prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p)
    except ValueError as e:  # a temperature, top-k or top-p out of range
        parser.error(str(e))
    print(args.prompt, end="")
    for piece in pieces:
        print(piece, end="", flush=True)
    print()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    model, task, meta = load_run_or_exit(parser, args.checkpoint)
    print(describe(args.checkpoint, meta))
    (write if isinstance(task, TextTask) else copy)(parser, args, model, task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
