"""Train a small decoder-only transformer: `python -m tinygrad_attn.train`.

One step: sample a batch of training sequences, forward, cross-entropy on the predicted tokens,
backward, clip the gradient norm, AdamW step with a warm-up + cosine learning rate.
  --task copy (or reverse): the answer tokens are trained; every --eval-every steps the model
      decodes held-out prompts greedily (with the KV cache), and the run stops early once it
      copies every held-out sequence exactly.
  --task text: next-token prediction on Python's own documentation (text.py), with a character
      or BPE tokenizer; every --eval-every steps the held-out loss in nats per character, next
      to the unigram and bigram baselines; at the end the model writes a sample.

The run directory (--out) holds
    checkpoint.npz   weights, optimizer state, step, RNG states, history (see checkpoint.py)
    config.json      the options of the run, and the model configuration
    history.json     training loss per step; the held-out figures per evaluation
    attention.svg    at the end: attention heatmaps, every layer and head, on a held-out example
    curves.svg       at the end: loss and held-out accuracy curves (see pictures.py)
Its default name comes from the options that differ from the defaults (runs/copy, runs/copy-gqa,
runs/reverse-layers4-rope: see default_out), so runs of different options never replace each
other; a fresh run into a directory that holds a run of other options is refused.

The checkpoint is replaced atomically at every evaluation. Ctrl-C stops at the end of the
current step and checkpoints it (a second Ctrl-C stops at once, leaving the last checkpoint);
--resume continues from the checkpoint with the options stored in it (giving other ones is
refused) and the same batches, dropout masks and losses as a run never interrupted. A loss,
gradient or weight that is not finite stops the run (exit code 1) and keeps the last good
checkpoint.
"""

import argparse
import dataclasses
import math
import os
import re
import signal
import sys
import time

import numpy as np

from . import checkpoint
from .data import IGNORE_INDEX, TASKS, format_symbols
from .nn import functional as F
from .nn.transformer import Transformer
from .optim import AdamW, clip_grad_norm_, warmup_cosine
from .pictures import example, write_pictures
from .runs import (MAX_CONTEXT_LENGTH, check_meta, command, evaluate, heldout_of, make_task, model_config,
                   new_history, stored_tokenizer, write_text)
from .engine import Tensor, default_rng, manual_seed
from .text import TOKENIZERS, tokenizer_state

DEFAULT_WARMUP = 50
# The text task's own defaults for the options it does not share with the copy task's: a 4-layer
# d_model 128 model on 128 characters passes 1.61 nats per character on the held-out documents by
# step 500 and is best near step 1000 (trained on, it overfits: docs/12-a-model-that-writes.md).
TEXT_DEFAULTS = dict(layers=4, d_model=128, context_length=128, batch_size=32, steps=1000, lr=3e-3,
                     eval_every=250)
SAMPLE_PROMPT, SAMPLE_TOKENS, SAMPLE_TEMPERATURE = 24, 100, 0.8  # the sample a text run writes at its end
MAX_EVAL_SIZE = 100_000
# A batch of B sequences in a context of T tokens makes B * heads * T * T attention weights per
# layer, kept for the backward pass: more than this (1 GiB of float32) is refused up front.
MAX_ATTENTION_WEIGHTS = 2 ** 28
# Options that are not stored with a run: where it lives, and the flag itself.
NOT_STORED = ("out", "resume")
# The --attention words, as the number of key/value heads each means for a number of query heads.
KV_HEADS = {"mha": lambda heads: heads, "gqa": lambda heads: max(1, heads // 2), "mqa": lambda heads: 1}
# The task's and the model configuration's fields as this command line spells them: their errors
# say "d_model=30", shown here as "--d-model 30".
FLAGS = {"num_symbols": "--num-symbols", "min_len": "--min-len", "max_len": "--max-len", "d_model": "--d-model",
         "num_heads": "--heads", "num_kv_heads": "--kv-heads", "num_layers": "--layers",
         "context_length": "--context-length", "dropout": "--dropout",
         "window": "--window", "layer_pattern": "--layer-pattern", "kv_latent_dim": "--kv-latent-dim"}
# What AdamW keeps per parameter once it has stepped.
ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")
# The files a run writes; a fresh start removes an earlier run's.
RUN_FILES = (checkpoint.FILENAME, "history.json", "attention.svg", "curves.svg")
_UNSET = object()  # an option not given on the command line


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: not for options whose help already says it, nor for None or False."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in action.help:
            return action.help
        return super()._get_help_string(action)


class Diverged(ArithmeticError):
    """The loss, the gradient norm or the weights stopped being finite numbers."""


class DeferredInterrupt:
    """A with-block in which the first Ctrl-C (SIGINT) only sets `requested`, for the training loop to
    stop at the end of its step, where the run is consistent and can be checkpointed; a second
    Ctrl-C raises KeyboardInterrupt at once, as usual."""

    def __enter__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc_info):
        signal.signal(signal.SIGINT, self.previous)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tinygrad_attn.train", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    g = p.add_argument_group("task")
    g.add_argument("--task", choices=(*TASKS, "text"), default="copy",
                   help="copy the symbols, or write them reversed; or model the text of Python's documentation")
    g.add_argument("--num-symbols", type=int, default=10, help="distinct symbols (the vocabulary adds PAD and SEP)")
    g.add_argument("--seq-len", type=int, default=None, help="fixed number of symbols; sets --min-len and --max-len")
    g.add_argument("--min-len", type=int, default=4, help="fewest symbols in a sequence")
    g.add_argument("--max-len", type=int, default=8, help="most symbols in a sequence")
    g.add_argument("--tokenizer", choices=TOKENIZERS, default="char", help="text: characters, or byte-level BPE")
    g.add_argument("--vocab-size", type=int, default=1000, help="text with --tokenizer bpe: tokens, bytes included")
    g = p.add_argument_group("model")
    g.add_argument("--attention", choices=tuple(KV_HEADS), default="mha",
                   help="multi-head, grouped-query or multi-query attention")
    g.add_argument("--layers", type=int, default=2, help="transformer blocks")
    g.add_argument("--d-model", type=int, default=64, help="embedding width")
    g.add_argument("--heads", type=int, default=4, help="query heads")
    g.add_argument("--kv-heads", type=int, default=None,
                   help="key/value heads (default: mha: = heads; gqa: heads/2; mqa: 1)")
    g.add_argument("--positions", choices=("learned", "rope"), default="learned", help="position encoding")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout probability")
    g.add_argument("--window", type=int, default=None,
                   help="sliding-window attention: each token sees this many most recent tokens (itself included)")
    g.add_argument("--layer-pattern", default=None,
                   help="the layers the window applies to, repeated: L local, G global (default L; Gemma 3: LLLLLG)")
    g.add_argument("--kv-latent-dim", type=int, default=None,
                   help="multi-head latent attention (DeepSeek-V2): cache a latent of this size, not keys and values")
    g.add_argument("--context-length", type=int, default=None,
                   help=f"positions the model has (default: 2 * max-len + 1, what the copy task needs; "
                        f"text: {TEXT_DEFAULTS['context_length']}; at most {MAX_CONTEXT_LENGTH})")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, default=64, help="training sequences per step")
    g.add_argument("--steps", type=int, default=1200, help="most optimizer steps (stops early at 100%% held-out)")
    g.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    g.add_argument("--warmup", type=int, default=None,
                   help=f"linear warm-up steps before the cosine decay (default: {DEFAULT_WARMUP}, "
                        "or half of --steps if that is less)")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decoupled weight decay")
    g.add_argument("--clip", type=float, default=1.0, help="clip the global gradient norm to this")
    g.add_argument("--seed", type=int, default=0, help="seeds init, dropout, batches and the held-out set")
    g = p.add_argument_group("evaluation and output")
    g.add_argument("--eval-every", type=int, default=100, help="evaluate and checkpoint every N steps")
    g.add_argument("--eval-size", type=int, default=200, help="held-out sequences to decode")
    g.add_argument("--out", default=None,
                   help="run directory (default: runs/ and a name from the options: runs/copy, runs/copy-gqa, ...)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with the options stored there")
    return p


def default_out(given, defaults):
    """runs/<task>, then a word for each option given that differs from its default, in --help's order:
    the value for --attention and --positions, else the flag and the value (runs/copy-gqa-layers4-lr0.01)."""
    words = [given.get("task", defaults["task"])]
    for name, default in defaults.items():
        value, flag = given.get(name, default), name.replace("_", "-")
        if name in ("task", *NOT_STORED) or value == default:
            continue
        words.append(value if name in ("attention", "positions") else f"{flag}{value:g}" if isinstance(value, float)
                     else f"{flag}{value}")
    return os.path.join("runs", "-".join(words))


def parse_args(argv=None):
    """Parse and validate the options; a bad one exits with a one-line error (code 2).

    With --resume the options are the ones stored in the run's checkpoint; options given beside
    it must agree with them. What the task and the model configuration check themselves is
    checked there, and their messages are shown with this command line's flags.
    """
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    parsed = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(defaults, _UNSET)))  # defaults left unset
    given = {k: v for k, v in vars(parsed).items() if v is not _UNSET}
    if given.get("task") == "text":
        defaults.update(TEXT_DEFAULTS)
    out = given.get("out") or default_out(given, defaults)
    options = stored_options(parser, out, given, defaults) if given.get("resume") else {**defaults, **given}
    args = argparse.Namespace(**dict(options, out=out, resume=bool(given.get("resume"))))
    shortened = args.warmup is None and args.steps < 2 * DEFAULT_WARMUP
    try:
        validate(args)
    except ValueError as e:
        parser.error(re.sub(r"\b(\w+)=", lambda m: f"{FLAGS[m[1]]} " if m[1] in FLAGS else m[0], str(e)))
    if not args.resume:
        check_not_another_run(parser, args)
    if shortened:
        print(f"note: warm-up {args.warmup} steps, half of --steps {args.steps} (the default, {DEFAULT_WARMUP}, "
              "is more than half the run)", file=sys.stderr)
    return args


def stored_options(parser, out, given, defaults):
    """The options stored in the checkpoint in `out`, checked to be the train CLI's (names and types)
    and to agree with the ones `given` beside --resume; else a one-line error through `parser`."""
    try:
        stored = checkpoint.read_meta(out).get("options")
    except checkpoint.CheckpointError as e:
        parser.error(f"cannot resume: {e}")
    names = [name for name in defaults if name not in NOT_STORED]
    if not isinstance(stored, dict) or set(stored) != set(names) or not all(
            type(stored[n]) is type(defaults[n]) or (defaults[n] is None and type(stored[n]) in (int, type(None)))
            for n in names):
        parser.error(f"cannot resume: the options stored in {out} are not this program's: {stored!r:.100}")
    changed = differences({n: stored[n] for n in given if n in names}, {n: given[n] for n in given if n in names})
    if changed:
        parser.error(f"{out} was trained with {', '.join(changed)}; --resume continues it with the options stored "
                     "there: leave those out, or start another run without --resume")
    return stored


def validate(args):
    """Check args and fill in what depends on other options (min/max-len, kv-heads, warm-up, context);
    ValueError naming the flags."""
    if args.seq_len is not None:
        args.min_len = args.max_len = args.seq_len
    for name in ("batch_size", "steps", "eval_every", "eval_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.eval_size > MAX_EVAL_SIZE:
        raise ValueError(f"--eval-size {args.eval_size} is more than {MAX_EVAL_SIZE:,} held-out sequences")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if not (math.isfinite(args.lr) and args.lr > 0 and math.isfinite(args.clip) and args.clip > 0
            and math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        raise ValueError(f"need finite numbers with --lr > 0, --clip > 0, --weight-decay >= 0; got {args.lr}, "
                         f"{args.clip}, {args.weight_decay}")
    if args.warmup is None:
        args.warmup = min(DEFAULT_WARMUP, args.steps // 2)
    if not 0 <= args.warmup <= args.steps:
        raise ValueError(f"--warmup {args.warmup} must be between 0 and --steps {args.steps}")
    implied = KV_HEADS[args.attention](args.heads)
    if args.kv_heads is None:
        args.kv_heads = implied
    elif args.attention != "gqa" and args.kv_heads != implied:
        raise ValueError(f"--attention {args.attention} means --kv-heads {implied}, got --kv-heads {args.kv_heads}")
    if args.task == "text" and args.tokenizer == "bpe" and not 256 < args.vocab_size <= 2 ** 16:
        raise ValueError(f"--vocab-size {args.vocab_size} must be above 256 (the bytes) and at most 65536")
    if args.task == "text":  # the tokenizer is trained with the task; its vocabulary is at most this
        vocab_size = args.vocab_size if args.tokenizer == "bpe" else 256
    else:
        task = make_task(vars(args))
        vocab_size, needed = task.vocab_size, task.context_length
        if args.context_length is None:
            args.context_length = needed
        if args.context_length < needed:
            raise ValueError(f"sequences of --max-len {args.max_len} symbols need a context of {needed} tokens "
                             f"(prompt and answer), but --context-length is {args.context_length}")
    make_model_config(args, vocab_size)
    weights = args.batch_size * args.heads * args.context_length ** 2
    if weights > MAX_ATTENTION_WEIGHTS:
        raise ValueError(f"--batch-size {args.batch_size} x --heads {args.heads} x a context of "
                         f"{args.context_length}^2 tokens make {weights:,} attention weights per layer, more than "
                         f"{MAX_ATTENTION_WEIGHTS:,}: use a smaller batch or shorter sequences")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a file, not a directory")


def check_not_another_run(parser, args):
    """A fresh run may replace the run in its directory only if that one had the same options."""
    if not os.path.exists(os.path.join(args.out, checkpoint.FILENAME)):
        return  # (a config.json alone is a run killed before its first checkpoint: nothing to lose)
    try:
        stored = checkpoint.read_meta(args.out).get("options")
    except checkpoint.CheckpointError as e:
        parser.error(f"{e}; choose another --out, or delete {args.out}")
    if stored != options_of(args):
        parser.error(f"{args.out} holds a run of other options: "
                     f"{', '.join(differences(stored if isinstance(stored, dict) else {}, options_of(args)))}; "
                     f"choose another --out (or none: its default is named after the options), or delete {args.out}")


def differences(stored, current):
    """'--flag stored (now current)' for each option whose value differs."""
    return [f"--{k.replace('_', '-')} {stored.get(k)} (now {current.get(k)})"
            for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]


def make_model_config(args, vocab_size):
    return model_config(dict(vocab_size=vocab_size, context_length=args.context_length,
                             d_model=args.d_model, num_layers=args.layers, num_heads=args.heads,
                             num_kv_heads=args.kv_heads, positions=args.positions, dropout=args.dropout,
                             window=args.window, layer_pattern=args.layer_pattern, kv_latent_dim=args.kv_latent_dim))


def train_step(model, optimizer, task, data_rng, args, step):
    """One optimizer step; returns (loss, learning rate, gradient norm before clipping).

    Diverged, before the update, if the loss or the gradient norm is not finite.
    """
    optimizer.lr = warmup_cosine(step, args.lr, args.warmup, args.steps)
    idx, targets, mask = task.get_batch(data_rng, args.batch_size)  # (B, T) each; mask None: no padding
    logits = model(Tensor(idx), attention_mask=mask)  # (B, T, vocab)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    optimizer.zero_grad()
    loss.backward()
    grad_norm = clip_grad_norm_(optimizer.params, args.clip)
    if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
        raise Diverged(f"step {step + 1} has a loss of {loss.item()} and a gradient norm of {grad_norm}")
    optimizer.step()
    return loss.item(), optimizer.lr, grad_norm


def options_of(args):
    """The options that define a run, stored with it."""
    return {k: v for k, v in vars(args).items() if k not in NOT_STORED}


def resume_command(args):
    """The command that continues the run in args.out, as the user would type it."""
    return command("train", ["--resume", "--out", args.out])


def where_it_stands(args, resumable=True):
    """The step of the checkpoint left in args.out (read from the file: the truth after any interrupt),
    and the command that continues from it."""
    try:
        step = checkpoint.read_meta(args.out).get("step")
    except checkpoint.CheckpointError:
        return "no checkpoint was written: nothing to resume"
    if not resumable:
        return f"the checkpoint of step {step} in {args.out} is the last good one"
    return f"the checkpoint of step {step} in {args.out} is intact; continue with:\n  {resume_command(args)}"


def clock(seconds):
    """3:07 for 187 seconds."""
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Progress:
    """The status line: redrawn in place (\\r) on a terminal, printed every `interval` seconds elsewhere
    (a log file, a pipe); evaluations print lines of their own in both."""

    def __init__(self, stream, total, first_step, eval_every, interval=5.0):
        self.stream, self.total, self.eval_every, self.interval = stream, total, eval_every, interval
        self.tty, self.first_step = stream.isatty(), first_step
        self.start = self.last = time.perf_counter()
        self.width = 0  # of the line on screen, to blank it out

    def rate(self, step):
        """Steps per second in this session, evaluations included."""
        return (step - self.first_step) / max(time.perf_counter() - self.start, 1e-9)

    def status(self, step, loss, evals):
        """The line for `step`: loss, latest held-out accuracy, speed and the time left at most."""
        latest = (f"{evals['exact_match'][-1]:.1%}" if "exact_match" in evals else
                  f"{evals['nats_per_char'][-1]:.3f} nats/char") if evals["step"] else None
        held = (f"held-out {latest} at {evals['step'][-1]}" if latest
                else f"first held-out check at {min(self.eval_every, self.total)}")
        rate = self.rate(step)
        return (f"step {step}/{self.total}  loss {loss:.4f}  {held}  {rate:.{0 if rate >= 10 else 1}f} steps/s  "
                f"ETA {clock((self.total - step) / max(rate, 1e-9))}")

    def update(self, step, loss, evals):
        if self.tty:
            self._redraw(self.status(step, loss, evals))
        elif time.perf_counter() - self.last >= self.interval:
            self.line(self.status(step, loss, evals))

    def line(self, text):
        self._redraw("")
        self.stream.write(("\r" if self.tty else "") + text + "\n")
        self.stream.flush()
        self.width, self.last = 0, time.perf_counter()

    def finish(self):
        """End a status line still on screen (before whatever prints next)."""
        if self.width:
            self.line("")

    def _redraw(self, text):
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
            self.width = len(text)


def append(series, **values):
    """Append one value to each named list of a history series."""
    for key, value in values.items():
        series[key].append(value)


def start_afresh(args, config):
    """Remove an earlier run's files from the run directory (parse_args made sure it was a run of the
    same options), write config.json; returns the names removed."""
    stale = [name for name in RUN_FILES if os.path.exists(os.path.join(args.out, name))]
    for name in stale:  # a fresh run must not leave an older run's files behind, to --resume or show by mistake
        os.remove(os.path.join(args.out, name))
    checkpoint.write_json(os.path.join(args.out, "config.json"),
                          {"options": options_of(args), "model": dataclasses.asdict(config)})
    return stale


def resume(path, args, model, optimizer, data_rng):
    """Load the checkpoint at `path` into model, optimizer and both generators.

    Returns (step, done, history). CheckpointError if it is missing, unreadable, or from a run
    with other options or another model.
    """
    model_state, optimizer_state, meta = checkpoint.load(path)
    check_meta(path, meta)
    diffs = differences(meta["options"], options_of(args))
    if diffs:
        raise checkpoint.CheckpointError(f"{path} was trained with other options: {', '.join(diffs)}; "
                                         f"repeat the original options with --resume")
    fresh = optimizer.state_dict()["hyperparams"]
    if (len(meta["history"]["train"]["step"]) != meta["step"]
            or any(optimizer_state["hyperparams"].get(k) != (list(v) if isinstance(v, tuple) else v)
                   for k, v in fresh.items() if k != "lr")  # the lr follows the schedule
            or any(set(state) != set(ADAM_STATE) or any(a.dtype != (p.dtype if a.ndim else np.int64)
                                                        for a in state.values())
                   for p, state in zip(optimizer.params, optimizer_state["state"]))):
        raise checkpoint.CheckpointError(f"{path} does not hold this run's AdamW state and history")
    try:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        data_rng.bit_generator.state = meta["data_rng"]
        default_rng().bit_generator.state = meta["model_rng"]
    except (ValueError, TypeError, KeyError) as e:
        raise checkpoint.CheckpointError(f"{path} does not fit this run: {e}") from None
    return meta["step"], meta["done"], meta["history"]


def save(path, args, task, config, step, done, history, model, optimizer, data_rng):
    """Checkpoint the run (atomically) and write its history.json beside it; Diverged instead if the
    weights are no longer finite, so the last good checkpoint stays. A text run stores its tokenizer."""
    if not all(np.isfinite(p.data).all() for p in model.parameters()):
        raise Diverged(f"the weights are no longer finite numbers after step {step}")
    meta = {"options": options_of(args), "model_config": dataclasses.asdict(config), "step": step, "done": done,
            "data_rng": data_rng.bit_generator.state, "model_rng": default_rng().bit_generator.state,
            "history": history}
    if args.task == "text":
        meta["tokenizer"] = tokenizer_state(task.tokenizer)
    checkpoint.save(path, model.state_dict(), optimizer.state_dict(), meta)
    checkpoint.write_json(os.path.join(os.path.dirname(path), "history.json"), history)


def header(args, task, config, heldout, n_params):
    """What is trained, how, and where, in lines of at most 80 columns."""
    warmup = f", warm-up {args.warmup} steps" if args.warmup else ""
    if args.task == "text":  # the count models the held-out loss should beat, on the same scale
        base = {name: loss / task.chars_per_token for name, loss in task.baselines().items()}
        held = f"held-out baselines: unigram {base['unigram']:.3f}, bigram {base['bigram']:.3f} nats/char"
    else:
        held = f"{len(heldout)} held-out sequences"
    return "\n".join([
        task.summary(), held,
        f"model: {args.layers} layers, d_model {args.d_model}, {config.attention} {args.heads}/{args.kv_heads} heads, "
        f"{args.positions} positions, {n_params:,} parameters",
        f"training: at most {args.steps} steps of {args.batch_size} sequences, AdamW lr {args.lr:g}{warmup}",
        f"every {args.eval_every} steps: held-out check and checkpoint in {args.out}"])


def per_char(metrics):
    """A text evaluation in words: '1.523 nats/char', after the loss per token where tokens are not characters."""
    per_token = f"{metrics['loss']:.4f} nats/token = " if metrics["loss"] != metrics["nats_per_char"] else ""
    return f"{per_token}{metrics['nats_per_char']:.3f} nats/char"


def evaluation_line(step, args, history, metrics):
    """The line an evaluation prints: the step, the mean training loss since the last, the held-out figures."""
    mean = np.mean(history["train"]["loss"][-args.eval_every:])
    if "exact_match" in metrics:
        held = f"exact {metrics['exact_match']:6.1%}, per token {metrics['token_accuracy']:6.1%}"
    else:
        held = per_char(metrics)
    return f"step {step:>5}/{args.steps}  mean loss {mean:.4f}  held-out: {held}"


def report(stream, args, model, task, heldout, predictions, metrics, history, step, elapsed):
    """The end of a run: held-out examples (a sample of text), the final figures, the run directory."""
    if args.task == "text":
        prompt = task.heldout_ids[:min(SAMPLE_PROMPT, model.cfg.context_length // 2)].tolist()
        print(f"\na sample (temperature {SAMPLE_TEMPERATURE}), after {len(prompt)} held-out tokens in [ ]:",
              file=stream)
        print(f"[{task.tokenizer.decode(prompt)}]" + "".join(write_text(model, task, prompt, SAMPLE_TOKENS,
                                                                         SAMPLE_TEMPERATURE)), file=stream)
        held = f"held-out {per_char(metrics)} (bigram {task.baselines()['bigram'] / task.chars_per_token:.3f})"
        example_args = ["--prompt", task.tokenizer.decode(prompt)]
    else:
        print(f"\nheld-out examples ({args.task}):", file=stream)
        for symbols, pred in list(zip(heldout, predictions))[:5]:
            mark = "✓" if np.array_equal(pred, task.answer(symbols)) else "✗"
            print(f"  {format_symbols(symbols)} -> {format_symbols(pred)}  {mark}", file=stream)
        held = (f"held-out exact match {metrics['exact_match']:.1%} of {len(heldout)}, per token "
                f"{metrics['token_accuracy']:.1%}")
        example_args = [format_symbols(heldout[0])]
    last_loss = float(np.mean(history["train"]["loss"][-args.eval_every:]))
    print(f"\nfinal: step {step}/{args.steps}, mean loss {last_loss:.4f} over the last {args.eval_every} steps\n"
          f"{held}; {elapsed:.1f} s", file=stream)
    print(f"run directory {args.out}:", file=stream)
    for name in sorted(os.listdir(args.out)):
        print(f"  {name:<15} {os.path.getsize(os.path.join(args.out, name)) / 1024:7.1f} kB", file=stream)
    print(f"try it: {command('sample', ['--checkpoint', args.out, *example_args])}", file=stream)
    return last_loss


def train(args, stream=None):
    """Run (or --resume) the training that args describe; returns the final figures as a dict.

    On --resume a bad checkpoint raises CheckpointError; a loss, gradient or weight that is not
    finite raises Diverged; Ctrl-C raises KeyboardInterrupt after checkpointing the step it
    ended (a second Ctrl-C: at once). The checkpoint on disk is the last good one in every case.
    """
    stream = sys.stdout if stream is None else stream
    path = os.path.join(args.out, checkpoint.FILENAME)
    tokenizer = stored_tokenizer(checkpoint.read_meta(path)) if args.resume and args.task == "text" else None
    task = make_task(vars(args), tokenizer)  # resumed, a text run decodes with the tokenizer it was trained with
    config = make_model_config(args, task.vocab_size)
    train_seed, heldout_seed = np.random.SeedSequence(args.seed).spawn(2)
    data_rng = np.random.default_rng(train_seed)
    heldout = heldout_of(task, np.random.default_rng(heldout_seed), args.eval_size)
    manual_seed(args.seed)  # parameter init and dropout draw from tinygrad_attn's generator
    model = Transformer(config)
    optimizer = AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    os.makedirs(args.out, exist_ok=True)
    removed = checkpoint.remove_leftovers(args.out)  # of writes that a kill -9 cut short
    if args.resume:
        step, done, history = resume(path, args, model, optimizer, data_rng)
        print(f"resuming {path} at step {step}" + (": the run is already complete" if done else ""), file=stream)
    else:
        removed += start_afresh(args, config)
        step, done, history = 0, False, new_history(vars(args))
    if removed:
        print(f"removed the files of an earlier run from {args.out}: {', '.join(removed)}", file=stream)
    print(header(args, task, config, heldout, sum(p.numel() for p in model.parameters())), file=stream)
    progress = Progress(stream, args.steps, step, args.eval_every)
    started = time.perf_counter()
    metrics = None  # of the latest evaluation
    try:  # numpy's overflow warnings are left out: train_step and save check for what is not finite
        with DeferredInterrupt() as interrupt, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while not done:
                loss, lr, grad_norm = train_step(model, optimizer, task, data_rng, args, step)
                step += 1
                append(history["train"], step=step, loss=loss, lr=lr, grad_norm=grad_norm)
                evaluating = step % args.eval_every == 0 or step == args.steps
                if evaluating:
                    metrics, predictions = evaluate(model, task, heldout)
                    append(history["eval"], step=step, **metrics)
                    done = metrics.get("exact_match") == 1.0 or step >= args.steps  # the copy task stops early
                    progress.line(evaluation_line(step, args, history, metrics))
                else:
                    progress.update(step, loss, history["eval"])
                if evaluating or interrupt.requested:
                    save(path, args, task, config, step, done, history, model, optimizer, data_rng)
                if interrupt.requested:
                    raise KeyboardInterrupt
    finally:
        progress.finish()
    elapsed = time.perf_counter() - started
    if metrics is None:  # a resumed run that was already complete: nothing was evaluated in this session
        metrics, predictions = evaluate(model, task, heldout)
    write_pictures(args.out, model, task, history, *example(task, config.context_length,
                                                            None if args.task == "text" else format_symbols(heldout[0])))
    last_loss = report(stream, args, model, task, heldout, predictions, metrics, history, step, elapsed)
    return dict(metrics, step=step, loss=last_loss, seconds=elapsed)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        train(args)
    except KeyboardInterrupt:
        print(f"interrupted: {where_it_stands(args)}")
        return 130
    except Diverged as e:
        print(f"error: training diverged: {e}; try a lower --lr than {args.lr:g}\n{where_it_stands(args, False)}",
              file=sys.stderr)
        return 1
    except checkpoint.CheckpointError as e:
        print(f"error: cannot resume: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # --out not writable, the disk full, the output closed (`| head`)
        if isinstance(e, BrokenPipeError):  # Python's advice: nothing more may reach the closed stdout
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        reason = "the output was closed (by `| head`?)" if isinstance(e, BrokenPipeError) else e
        print(f"error: {reason}\n{where_it_stands(args)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
