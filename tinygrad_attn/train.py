"""Train a small decoder-only transformer on the copy task: `python -m tinygrad_attn.train`.

One step: sample a batch of training sequences, forward, cross-entropy on the answer tokens,
backward, clip the gradient norm, AdamW step with a warm-up + cosine learning rate. Every
--eval-every steps the model decodes held-out prompts greedily (with the KV cache); the
run stops early once it copies every held-out sequence exactly.

The run directory (--out, default runs/<task>) holds
    checkpoint.npz   weights, optimizer state, step, RNG states, history (see checkpoint.py)
    config.json      the options of the run, and the model configuration
    history.json     training loss per step; held-out accuracy per evaluation
    attention.svg    at the end: attention heatmaps, every layer and head, on a held-out example
    curves.svg       at the end: loss and held-out accuracy curves (see pictures.py)
The checkpoint is replaced atomically at every evaluation, so Ctrl-C leaves the last one
intact, and --resume continues from it with the same batches, dropout masks and losses
as a run that was never interrupted.
"""

import argparse
import dataclasses
import os
import re
import shlex
import sys
import time

import numpy as np

from . import checkpoint
from .data import FIRST_SYMBOL, IGNORE_INDEX, TASKS, format_symbols
from .nn import functional as F
from .nn.transformer import Transformer, TransformerConfig
from .optim import AdamW, clip_grad_norm_, warmup_cosine
from .pictures import write_pictures
from .runs import evaluate, make_task
from .tensor import Tensor, default_rng, manual_seed

# Options that may differ between a run and its --resume: where it lives, and the flag itself.
NOT_RESUME_CHECKED = ("out", "resume")
# The --attention words, as the number of key/value heads each means for a number of query heads.
KV_HEADS = {"mha": lambda heads: heads, "gqa": lambda heads: max(1, heads // 2), "mqa": lambda heads: 1}
# The task's and the model configuration's fields as this command line spells them: their errors
# say "d_model=30", shown here as "--d-model 30".
FLAGS = {"num_symbols": "--num-symbols", "min_len": "--min-len", "max_len": "--max-len", "d_model": "--d-model",
         "num_heads": "--heads", "num_kv_heads": "--kv-heads", "num_layers": "--layers",
         "context_length": "--context-length", "dropout": "--dropout",
         "window": "--window", "layer_pattern": "--layer-pattern", "kv_latent_dim": "--kv-latent-dim"}


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tinygrad_attn.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("task")
    g.add_argument("--task", choices=TASKS, default="copy", help="copy the symbols, or write them reversed")
    g.add_argument("--num-symbols", type=int, default=10, help="distinct symbols (the vocabulary adds PAD and SEP)")
    g.add_argument("--seq-len", type=int, default=None, help="fixed number of symbols; sets --min-len and --max-len")
    g.add_argument("--min-len", type=int, default=4, help="fewest symbols in a sequence")
    g.add_argument("--max-len", type=int, default=8, help="most symbols in a sequence")
    g = p.add_argument_group("model")
    g.add_argument("--attention", choices=tuple(KV_HEADS), default="mha",
                   help="multi-head, grouped-query or multi-query attention")
    g.add_argument("--layers", type=int, default=2, help="transformer blocks")
    g.add_argument("--d-model", type=int, default=64, help="embedding width")
    g.add_argument("--heads", type=int, default=4, help="query heads")
    g.add_argument("--kv-heads", type=int, default=None,
                   help="key/value heads (gqa: default heads/2; mha: = heads; mqa: 1)")
    g.add_argument("--positions", choices=("learned", "rope"), default="learned", help="position encoding")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout probability")
    g.add_argument("--window", type=int, default=None,
                   help="sliding-window attention: each token sees this many most recent tokens (itself included)")
    g.add_argument("--layer-pattern", default=None,
                   help="the layers the window applies to, repeated: L local, G global (default L; Gemma 3: LLLLLG)")
    g.add_argument("--kv-latent-dim", type=int, default=None,
                   help="multi-head latent attention (DeepSeek-V2): cache a latent of this size, not keys and values")
    g.add_argument("--context-length", type=int, default=None,
                   help="positions the model has (default: 2 * max-len + 1, what the task needs)")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--steps", type=int, default=800, help="most optimizer steps (stops early at 100%%)")
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    g.add_argument("--warmup", type=int, default=50, help="linear warm-up steps before the cosine decay")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decoupled weight decay")
    g.add_argument("--clip", type=float, default=1.0, help="clip the global gradient norm to this")
    g.add_argument("--seed", type=int, default=0, help="seeds init, dropout, batches and the held-out set")
    g = p.add_argument_group("evaluation and output")
    g.add_argument("--eval-every", type=int, default=100, help="evaluate and checkpoint every N steps")
    g.add_argument("--eval-size", type=int, default=200, help="held-out sequences to decode")
    g.add_argument("--out", default=None, help="run directory (default: runs/<task>)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    return p


def parse_args(argv=None):
    """Parse and validate the options; a bad one exits with a one-line error (code 2).

    What the task and the model configuration check themselves is checked there, and their
    messages are shown with this command line's flags.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seq_len is not None:
        args.min_len = args.max_len = args.seq_len
    if args.out is None:
        args.out = os.path.join("runs", args.task)
    for name in ("batch_size", "steps", "eval_every", "eval_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    implied = KV_HEADS[args.attention](args.heads)
    if args.kv_heads is None:
        args.kv_heads = implied
    elif args.attention != "gqa" and args.kv_heads != implied:
        parser.error(f"--attention {args.attention} means --kv-heads {implied}, got --kv-heads {args.kv_heads}")
    if not (args.lr > 0 and args.clip > 0 and args.weight_decay >= 0):
        parser.error(f"need --lr > 0, --clip > 0, --weight-decay >= 0; got {args.lr}, {args.clip}, {args.weight_decay}")
    if not 0 <= args.warmup <= args.steps:
        parser.error(f"--warmup {args.warmup} must be between 0 and --steps {args.steps}")
    try:
        needed = make_task(vars(args)).context_length
        if args.context_length is None:
            args.context_length = needed
        if args.context_length < needed:
            parser.error(f"sequences of --max-len {args.max_len} symbols need a context of {needed} tokens (prompt "
                         f"and answer), but --context-length is {args.context_length}")
        make_model_config(args)
    except ValueError as e:
        parser.error(re.sub(r"\b(\w+)=", lambda m: f"{FLAGS[m[1]]} " if m[1] in FLAGS else m[0], str(e)))
    return args


def make_model_config(args):
    return TransformerConfig(vocab_size=args.num_symbols + FIRST_SYMBOL, context_length=args.context_length,
                             d_model=args.d_model, num_layers=args.layers, num_heads=args.heads,
                             num_kv_heads=args.kv_heads, positions=args.positions, dropout=args.dropout,
                             window=args.window, layer_pattern=args.layer_pattern, kv_latent_dim=args.kv_latent_dim)


def train_step(model, optimizer, task, data_rng, args, step):
    """One optimizer step; returns (loss, learning rate, gradient norm before clipping)."""
    optimizer.lr = warmup_cosine(step, args.lr, args.warmup, args.steps)
    idx, targets, mask = task.get_batch(data_rng, args.batch_size)  # (B, T) each
    logits = model(Tensor(idx), attention_mask=Tensor(mask))  # (B, T, vocab)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    optimizer.zero_grad()
    loss.backward()
    grad_norm = clip_grad_norm_(optimizer.params, args.clip)
    optimizer.step()
    return loss.item(), optimizer.lr, grad_norm


def options_of(args):
    """The options that define a run: a --resume must repeat them."""
    return {k: v for k, v in vars(args).items() if k not in NOT_RESUME_CHECKED}


def resume_command(argv):
    """The command line that continues this run."""
    argv = [a for a in argv if a != "--resume"]
    return shlex.join([sys.executable, "-m", "tinygrad_attn.train", *argv, "--resume"])


class Progress:
    """Status output: a line redrawn in place (\\r) on a terminal, plain lines at evaluations."""

    def __init__(self, stream, total, first_step):
        self.stream, self.total, self.tty = stream, total, stream.isatty()
        self.first_step, self.start = first_step, time.perf_counter()
        self.width = 0  # of the line on screen, to blank it out

    def rate(self, step):
        """Steps per second in this session, evaluations included."""
        return (step - self.first_step) / max(time.perf_counter() - self.start, 1e-9)

    def update(self, step, loss, exact):
        if self.tty:
            held = "-" if exact is None else f"{exact:.1%}"
            self._redraw(f"step {step}/{self.total}  loss {loss:.4f}  held-out exact {held}  "
                         f"{self.rate(step):.1f} steps/s")

    def line(self, text):
        self._redraw("")
        self.stream.write(("\r" if self.tty else "") + text + "\n")
        self.stream.flush()
        self.width = 0

    def _redraw(self, text):
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
            self.width = len(text)


def new_history():
    return {"train": {"step": [], "loss": [], "lr": [], "grad_norm": []},
            "eval": {"step": [], "exact_match": [], "token_accuracy": []}}


def append(series, **values):
    """Append one value to each named list of a history series."""
    for key, value in values.items():
        series[key].append(value)


def start_afresh(args, config, stream):
    """Make the run directory, remove an earlier run's checkpoint and history from it, write config.json."""
    os.makedirs(args.out, exist_ok=True)
    stale = [name for name in (checkpoint.FILENAME, "history.json") if os.path.exists(os.path.join(args.out, name))]
    for name in stale:  # a fresh run must not leave an older run's files behind, to --resume by mistake
        os.remove(os.path.join(args.out, name))
    if stale:
        print(f"starting afresh: removed the earlier run's {' and '.join(stale)} from {args.out}", file=stream)
    checkpoint.write_json(os.path.join(args.out, "config.json"),
                          {"options": options_of(args), "model": dataclasses.asdict(config)})


def resume(path, args, model, optimizer, data_rng):
    """Load the checkpoint at `path` into model, optimizer and both generators.

    Returns (step, done, history). CheckpointError if it is missing, unreadable, or from a run
    with other options or another model.
    """
    model_state, optimizer_state, meta = checkpoint.load(path)
    current = options_of(args)
    diffs = [f"--{k.replace('_', '-')} {meta['options'].get(k)} (now {current.get(k)})"
             for k in sorted(set(meta["options"]) | set(current)) if meta["options"].get(k) != current.get(k)]
    if diffs:
        raise checkpoint.CheckpointError(f"{path} was trained with other options: {', '.join(diffs)}; "
                                         f"repeat the original options with --resume")
    try:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
    except ValueError as e:
        raise checkpoint.CheckpointError(f"{path} does not fit this model: {e}") from None
    data_rng.bit_generator.state = meta["data_rng"]
    default_rng().bit_generator.state = meta["model_rng"]
    return meta["step"], meta["done"], meta["history"]


def save(path, args, config, step, done, history, model, optimizer, data_rng):
    """Checkpoint the run (atomically) and write its history.json beside it."""
    meta = {"options": options_of(args), "model_config": dataclasses.asdict(config), "step": step, "done": done,
            "data_rng": data_rng.bit_generator.state, "model_rng": default_rng().bit_generator.state,
            "history": history}
    checkpoint.save(path, model.state_dict(), optimizer.state_dict(), meta)
    checkpoint.write_json(os.path.join(os.path.dirname(path), "history.json"), history)


def report(stream, args, task, heldout, predictions, metrics, history, step, elapsed):
    """The end of a run: some held-out examples, the final figures, the run directory."""
    print(f"\nheld-out examples ({args.task}):", file=stream)
    for symbols, pred in list(zip(heldout, predictions))[:5]:
        mark = "✓" if np.array_equal(pred, task.answer(symbols)) else "✗"
        print(f"  {format_symbols(symbols)} -> {format_symbols(pred)}  {mark}", file=stream)
    last_loss = float(np.mean(history["train"]["loss"][-args.eval_every:]))
    print(f"\nfinal: step {step}/{args.steps}, loss {last_loss:.4f} (mean of the last {args.eval_every} steps), "
          f"held-out exact match {metrics['exact_match']:.1%} of {len(heldout)}, per-token "
          f"{metrics['token_accuracy']:.1%}, {elapsed:.1f} s", file=stream)
    print(f"run directory {args.out}:", file=stream)
    for name in sorted(os.listdir(args.out)):
        print(f"  {name:<15} {os.path.getsize(os.path.join(args.out, name)) / 1024:7.1f} kB", file=stream)
    print(f"try it: python -m tinygrad_attn.sample --checkpoint {shlex.quote(args.out)} "
          f"{shlex.quote(format_symbols(heldout[0]))}", file=stream)
    return last_loss


def train(args, argv=(), stream=None):
    """Run (or --resume) the training that args describe; returns the final figures as a dict.

    On --resume a bad checkpoint raises CheckpointError. KeyboardInterrupt passes through,
    after a message saying how to resume.
    """
    stream = sys.stdout if stream is None else stream
    task, config = make_task(vars(args)), make_model_config(args)
    train_seed, heldout_seed = np.random.SeedSequence(args.seed).spawn(2)
    data_rng = np.random.default_rng(train_seed)
    heldout = task.heldout_set(np.random.default_rng(heldout_seed), args.eval_size)
    manual_seed(args.seed)  # parameter init and dropout draw from tinygrad_attn's generator
    model = Transformer(config)
    optimizer = AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    path = os.path.join(args.out, checkpoint.FILENAME)
    if args.resume:
        step, done, history = resume(path, args, model, optimizer, data_rng)
        saved_step = step
        print(f"resuming {path} at step {step}" + (": the run is already complete" if done else ""), file=stream)
    else:
        start_afresh(args, config, stream)
        step, done, history, saved_step = 0, False, new_history(), None
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.task} task: {args.num_symbols} symbols, lengths {args.min_len}..{args.max_len}, "
          f"{len(heldout)} held-out sequences | model: {args.layers} layers, d_model {args.d_model}, "
          f"{config.attention} {args.heads}/{args.kv_heads} heads, {args.positions} positions, "
          f"{n_params:,} parameters", file=stream)
    progress = Progress(stream, args.steps, step)
    started = time.perf_counter()
    metrics = None  # of the latest evaluation
    try:
        while not done:
            loss, lr, grad_norm = train_step(model, optimizer, task, data_rng, args, step)
            step += 1
            append(history["train"], step=step, loss=loss, lr=lr, grad_norm=grad_norm)
            progress.update(step, loss, history["eval"]["exact_match"][-1] if history["eval"]["step"] else None)
            if step % args.eval_every == 0 or step == args.steps:
                metrics, predictions = evaluate(model, task, heldout)
                append(history["eval"], step=step, **metrics)
                done = metrics["exact_match"] == 1.0 or step >= args.steps
                mean_loss = np.mean(history["train"]["loss"][-args.eval_every:])
                progress.line(f"step {step:>5}/{args.steps}  mean loss {mean_loss:.4f}  held-out exact match "
                              f"{metrics['exact_match']:6.1%}  per-token {metrics['token_accuracy']:6.1%}  "
                              f"{progress.rate(step):.1f} steps/s")
                save(path, args, config, step, done, history, model, optimizer, data_rng)
                saved_step = step
    except KeyboardInterrupt:
        progress.line(f"interrupted at step {step}.")
        if saved_step is None:
            print(f"no checkpoint was written yet (the first comes at step {args.eval_every}); "
                  "nothing to resume.", file=stream)
        else:
            print(f"the checkpoint of step {saved_step} in {args.out} is intact; continue with:\n"
                  f"  {resume_command(argv)}", file=stream)
        raise
    elapsed = time.perf_counter() - started
    if metrics is None:  # a resumed run that was already complete: nothing was evaluated in this session
        metrics, predictions = evaluate(model, task, heldout)
    write_pictures(args.out, model, task, history, heldout[0])
    last_loss = report(stream, args, task, heldout, predictions, metrics, history, step, elapsed)
    return dict(metrics, step=step, loss=last_loss, seconds=elapsed)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        train(args, argv)
    except checkpoint.CheckpointError as e:
        print(f"error: cannot resume: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
