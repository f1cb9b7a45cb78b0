"""A training run as the commands see it (train, sample, pictures): what its checkpoint's meta
holds, the task and model rebuilt from it, how big a model may be, and the model evaluated on
the task.

checkpoint.py knows the file format and nothing of models; this module knows what a run is,
and checks what a run's files say before anything large is built from it.
"""

import os
import shlex
import sys

import numpy as np

from . import checkpoint
from .data import TASKS, CopyTask, decode_answer
from .nn import functional as F
from .nn.transformer import Transformer, TransformerConfig
from .engine import Tensor, no_grad
from .text import TextTask, load_corpus, split_corpus, tokenizer_from_state, train_tokenizer

# The most a run may ask for. Far beyond what this numpy engine trains in reasonable time, low
# enough that a typo (or a crafted checkpoint) is refused at once instead of allocating gigabytes:
# every layer keeps a context_length x context_length causal mask, and a model has about
# 12 * num_layers * d_model**2 + (2 * vocab_size + context_length) * d_model parameters (GPT's count).
MAX_CONTEXT_LENGTH = 4096
MAX_PARAMETERS = 2 ** 28  # 1 GiB of float32, and the optimizer keeps two more of it
# What a run's checkpoint meta holds besides checkpoint.py's own entries, and the type of each
# (a text run also keeps its tokenizer, so that it decodes what it was trained on).
META = {"options": dict, "model_config": dict, "step": int, "done": bool, "history": dict, "data_rng": dict,
        "model_rng": dict}
# The history: a list per name, one entry per training step and per evaluation; what an
# evaluation measures depends on the task.
TRAIN_HISTORY = ("step", "loss", "lr", "grad_norm")
EVAL_HISTORY = {"copy": ("step", "exact_match", "token_accuracy"), "text": ("step", "loss", "nats_per_char")}
TASK_OPTIONS = {"copy": ("num_symbols", "min_len", "max_len"), "text": ("context_length", "vocab_size")}


def kind_of(options):
    """'text' for the text task, 'copy' for the copy and reverse tasks (what their runs have in common)."""
    return "text" if options.get("task") == "text" else "copy"


def history_names(options):
    """{series: column names} of the history of a run with these options."""
    return {"train": TRAIN_HISTORY, "eval": EVAL_HISTORY[kind_of(options)]}


def new_history(options):
    return {series: {name: [] for name in names} for series, names in history_names(options).items()}


def make_task(options, tokenizer=None):
    """The task a run trains on, from its options (the train CLI's, as stored in the run); a text
    task with `tokenizer` (the run's own), else with one trained on the corpus as the options say.

    ValueError if they do not describe one, or one whose sequences no model context may hold.
    """
    kind = kind_of(options)
    bad = [f"{name}={options.get(name)!r:.40}" for name in TASK_OPTIONS[kind] if type(options.get(name)) is not int]
    if bad:
        raise ValueError(f"the task needs integers: {', '.join(bad)}")
    if kind == "text":
        if not 1 <= options["context_length"] <= MAX_CONTEXT_LENGTH:
            raise ValueError(f"context_length={options['context_length']} must be between 1 and {MAX_CONTEXT_LENGTH}")
        if tokenizer is None:
            tokenizer = train_tokenizer(options.get("tokenizer"), *split_corpus(load_corpus()), options["vocab_size"])
        return TextTask(tokenizer, options["context_length"])
    if 2 * options["max_len"] + 1 > MAX_CONTEXT_LENGTH:
        raise ValueError(f"max_len={options['max_len']} needs a context of {2 * options['max_len'] + 1} tokens, "
                         f"more than the most a model may have, {MAX_CONTEXT_LENGTH}")
    return CopyTask(options["num_symbols"], options["min_len"], options["max_len"], options.get("task"))


def heldout_of(task, rng, size):
    """What a run is evaluated on: `size` held-out copy sequences drawn by rng, or a text task's held-out windows."""
    return task.heldout if isinstance(task, TextTask) else task.heldout_set(rng, size)


def model_config(fields):
    """A TransformerConfig from its fields (a dict), refused with a ValueError naming them if it is
    malformed or larger than this engine holds (MAX_CONTEXT_LENGTH, MAX_PARAMETERS)."""
    try:
        config = TransformerConfig(**fields)
    except TypeError as e:  # an unknown or missing field, or a comparison with a value of the wrong type
        raise ValueError(f"not a model configuration: {e}") from None
    if config.context_length > MAX_CONTEXT_LENGTH:
        raise ValueError(f"context_length={config.context_length} is more than {MAX_CONTEXT_LENGTH}, the most a model "
                         "may have (each layer keeps a context_length x context_length mask)")
    parameters = (12 * config.num_layers * config.d_model ** 2
                  + (2 * config.vocab_size + config.context_length) * config.d_model)
    if parameters > MAX_PARAMETERS:
        raise ValueError(f"vocab_size={config.vocab_size}, d_model={config.d_model} and num_layers={config.num_layers} "
                         f"make about {parameters:.2g} parameters, more than the {MAX_PARAMETERS:.2g} a model may have")
    return config


def check_meta(path, meta):
    """The entries of a run's checkpoint meta have their types, the history its lists of numbers;
    else CheckpointError naming the entry."""
    for key, kind in META.items():
        if type(meta.get(key)) is not kind:
            raise checkpoint.CheckpointError(f"{path}: meta entry {key!r} should be a {kind.__name__}, "
                                             f"got {meta.get(key)!r:.60}")
    for series, names in history_names(meta["options"]).items():
        columns = meta["history"].get(series)
        if not (isinstance(columns, dict) and set(columns) == set(names)
                and all(isinstance(columns[n], list) and len(columns[n]) == len(columns[names[0]]) for n in names)
                and all(type(v) in (int, float) for n in names for v in columns[n])):
            raise checkpoint.CheckpointError(f"{path}: its history[{series!r}] should hold lists of numbers of one "
                                             f"length, named {', '.join(names)}")


def load_run(path):
    """The trained model (eval mode), its task and the checkpoint's meta, from a run directory or file.

    CheckpointError if the checkpoint is missing, unreadable, or does not fit its own configuration;
    the configuration is checked before the model is built.
    """
    model_state, _, meta = checkpoint.load(path)
    check_meta(path, meta)
    try:
        config, task = model_config(meta["model_config"]), make_task(meta["options"], stored_tokenizer(meta))
    except ValueError as e:
        raise checkpoint.CheckpointError(f"{path}: {e}") from None
    if config.vocab_size != task.vocab_size or config.context_length < task.context_length:
        raise checkpoint.CheckpointError(f"{path}: its model (vocab_size={config.vocab_size}, context_length="
                                         f"{config.context_length}) does not fit its task (vocab_size="
                                         f"{task.vocab_size}, context_length={task.context_length})")
    if not all(np.isfinite(a).all() for a in model_state.values()):
        raise checkpoint.CheckpointError(f"{path} holds weights that are not finite numbers")
    model = Transformer(config)
    try:
        model.load_state_dict(model_state)
    except ValueError as e:
        raise checkpoint.CheckpointError(f"{path} does not fit the model its configuration describes: {e}") from None
    return model.eval(), task, meta


def stored_tokenizer(meta):
    """The tokenizer a text run stored with its checkpoint (None for other runs); ValueError if malformed."""
    return tokenizer_from_state(meta["tokenizer"]) if kind_of(meta["options"]) == "text" else None


def load_run_or_exit(parser, path):
    """load_run for a command line: a bad checkpoint is a one-line error through `parser` (exit code 2)."""
    try:
        return load_run(path)
    except checkpoint.CheckpointError as e:
        parser.error(str(e) + (_no_run_hint(path) if not os.path.exists(path) else ""))


def _no_run_hint(path):
    """For a run directory that does not exist: the runs beside it, and the command that trains one."""
    parent, name = os.path.split(os.path.normpath(path))
    folder = parent or "."
    runs = sorted(entry for entry in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, entry, checkpoint.FILENAME))) if os.path.isdir(folder) else []
    here = f"; the runs there are: {', '.join(os.path.join(parent, run) for run in runs)}" if runs else ""
    task = name.split("-")[0]      # train.default_out names a run runs/<task>-<options>
    train = command("train", ["--task", task] if task in (*TASKS, "text") and task != "copy" else [])  # (copy: the default)
    return f"{here} (train one first: {train}; the run's directory is named after its options)"


def command(tool, argv):
    """The command line that runs `python -m tinygrad_attn.<tool>` with argv, spelled the way the user
    runs things: `make <tool> ARGS="..."` under make (the Makefile sets TINYGRAD_ATTN_MAKE), else
    with the interpreter as they typed it (sys.orig_argv), not the path it resolves to."""
    if os.environ.get("TINYGRAD_ATTN_MAKE"):
        args = shlex.join(argv)
        if not args:
            return f"make {tool}"
        return f"make {tool} ARGS=" + (f'"{args}"' if not set('"$`\\') & set(args) else shlex.quote(args))
    python = getattr(sys, "orig_argv", [""])[0] or sys.executable
    return shlex.join([python, "-m", f"tinygrad_attn.{tool}", *argv])


def describe(path, meta):
    """Where a run's checkpoint stands, in a line or two: step, latest held-out accuracy, finished or not."""
    evals = meta["history"]["eval"]
    held = f"{held_out_summary(evals)} at step {evals['step'][-1]}" if evals["step"] else "not evaluated yet"
    if meta["done"]:
        return f"{path}: a finished run, step {meta['step']}, {held}"
    run_dir = path if os.path.isdir(path) else os.path.dirname(path) or "."
    return (f"{path}: step {meta['step']} of {meta['options'].get('steps')}, {held}\n"
            f"  the run stopped before it finished; continue it with: "
            f"{command('train', ['--resume', '--out', run_dir])}")


def held_out_summary(evals, i=-1):
    """The i-th evaluation of a history in words: 'held-out exact match 99.5%' or 'held-out 1.52 nats/char'."""
    if "exact_match" in evals:
        return f"held-out exact match {evals['exact_match'][i]:.1%}"
    return f"held-out {evals['nats_per_char'][i]:.3f} nats/char"


def evaluate(model, task, heldout):
    """The held-out figures of the model on its task: evaluate_copy or evaluate_text.

    Returns (metrics {name: float}, predictions: the copy task's answers, None for text).
    """
    if isinstance(task, TextTask):
        return evaluate_text(model, task), None
    return evaluate_copy(model, task, heldout)


def evaluate_text(model, task, batch_size=64):
    """Held-out cross-entropy of next-token prediction over every held-out window, in eval mode:
    {'loss': nats per token, 'nats_per_char': the same per character of the held-out text}."""
    was_training, total, count = model.training, 0.0, 0
    model.eval()
    with no_grad():
        for idx, targets in task.heldout.batches(batch_size):  # (B, T) each
            logits = model(Tensor(idx))  # (B, T, vocab_size)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
            total, count = total + loss.item(), count + targets.size
    model.train(was_training)
    return {"loss": total / count, "nats_per_char": total / count / task.chars_per_token}


def write_text(model, task, prompt, max_new_tokens, temperature=0.8, top_k=None, top_p=None):
    """The text the model writes after the token ids `prompt`, as an iterator of pieces, one per new
    token as it is drawn: with the KV cache if prompt and new tokens fit the model's context, else
    with the book's sliding window (the last context_length tokens rerun at every step). A BPE
    token that ends inside a character waits for the rest of its bytes. ValueError at once
    (before the first token) for a bad sampling argument.
    """
    fits = len(prompt) + max_new_tokens <= model.cfg.context_length
    tokens = model.stream([list(prompt)], max_new_tokens, temperature, top_k, top_p, use_cache=fits)

    def pieces():
        new, shown = [], ""
        for token in tokens:  # (1, 1) each
            new.append(int(token[0, 0]))
            stable = task.tokenizer.decode(new).rstrip("\ufffd")  # U+FFFD: bytes of a character still to come
            yield stable[len(shown):]
            shown = stable
        yield task.tokenizer.decode(new)[len(shown):]

    return pieces()


def evaluate_copy(model, task, sequences, batch_size=256):
    """Greedy decoding of every sequence's prompt, with the KV cache (generate() runs in eval mode).

    Returns ({'exact_match', 'token_accuracy'}, predictions): exact match is the fraction of
    sequences whose whole answer is right, token accuracy the fraction of answer symbols;
    predictions are symbol arrays (-1 where the model wrote PAD or SEP).
    """
    predictions = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        idx, mask = task.prompts(chunk)  # (B, P) each
        out = model.generate(Tensor(idx), max(len(s) for s in chunk), temperature=0.0, use_cache=True,
                             attention_mask=Tensor(mask)).numpy()  # (B, P + longest)
        predictions += [decode_answer(row[idx.shape[1]:], len(s)) for row, s in zip(out, chunk)]
    right = [pred == task.answer(s) for pred, s in zip(predictions, sequences)]
    metrics = {"exact_match": float(np.mean([r.all() for r in right])),
               "token_accuracy": float(np.concatenate(right).mean())}
    return metrics, predictions
