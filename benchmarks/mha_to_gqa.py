"""From multi-head to grouped-query attention by mean-pooling, on the trained copy model.

Trains the copy-task model (multi-head attention, `make train`'s options unless others are
given after --), then for each number of key/value heads converts a copy of it with
convert_to_grouped_query (GroupedQueryAttention.from_multihead: each group's key/value heads
averaged, Ainslie et al. 2023) and reports held-out accuracy before the conversion, right after
it, and after a short uptraining (--uptrain, a fraction of the steps the original took; the
paper uses 5%). For comparison, the same converted shape trained from scratch for those steps.

    python -m benchmarks.mha_to_gqa                                    # the default copy model
    python -m benchmarks.mha_to_gqa --kv-heads 2 -- --num-symbols 6 --seq-len 4 --d-model 32
"""

import argparse
import dataclasses
import io
import os
import tempfile

import numpy as np

from tinygrad_attn import manual_seed
from tinygrad_attn import train as T
from tinygrad_attn.nn.transformer import Transformer, convert_to_grouped_query
from tinygrad_attn.optim import AdamW
from tinygrad_attn.runs import evaluate, load_run


def uptrain(model, task, args, steps, seed):
    """`steps` optimizer steps of the training recipe (warm-up a fifth of them, then cosine), fresh AdamW."""
    up = argparse.Namespace(**{**vars(args), "steps": steps, "warmup": steps // 5})
    optimizer = AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    data_rng = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        T.train_step(model, optimizer, task, data_rng, up, step)
    return model.eval()


def report(label, model, task, heldout):
    metrics, _ = evaluate(model, task, heldout)
    print(f"  {label:<34} {metrics['exact_match']:6.1%} exact, {metrics['token_accuracy']:6.1%} per token")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.mha_to_gqa", description=__doc__.split("\n\n")[0])
    p.add_argument("--kv-heads", type=int, nargs="+", default=[2, 1], help="key/value heads to convert to")
    p.add_argument("--uptrain", type=float, default=0.05, help="uptraining steps, a fraction of the original's")
    p.add_argument("--eval-size", type=int, default=1000, help="held-out sequences to decode")
    p.add_argument("train_options", nargs="*", help="options of python -m tinygrad_attn.train, after --")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        train_args = T.parse_args([*args.train_options, "--attention", "mha", "--out", out])
        result = T.train(train_args, io.StringIO())
        model, task, _ = load_run(os.path.join(out, "checkpoint.npz"))
    heldout = task.heldout_set(np.random.default_rng(1234), args.eval_size)  # the held-out split: never trained on
    steps = max(1, round(args.uptrain * result["step"]))
    print(f"copy model: {train_args.layers} layers, d_model {train_args.d_model}, {train_args.heads} heads, "
          f"trained {result['step']} steps; {len(heldout)} held-out sequences; uptraining {steps} steps "
          f"({args.uptrain:.0%})")
    report("multi-head, as trained", model, task, heldout)
    state = model.state_dict()
    for kv in args.kv_heads:
        converted = Transformer(model.cfg)
        converted.load_state_dict(state)
        convert_to_grouped_query(converted, kv)
        heads = f"{kv} kv head" + ("s" if kv > 1 else "")
        report(f"{heads}, right after pooling", converted, task, heldout)
        report(f"{heads}, after uptraining", uptrain(converted, task, train_args, steps, seed=kv), task, heldout)
        manual_seed(kv)
        scratch = Transformer(dataclasses.replace(model.cfg, num_kv_heads=kv))
        report(f"{heads}, from scratch, as long", uptrain(scratch, task, train_args, steps, kv), task, heldout)


if __name__ == "__main__":
    main()
