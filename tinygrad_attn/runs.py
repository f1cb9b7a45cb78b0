"""A training run as the commands see it (train, sample, pictures): its task and model rebuilt
from what the run stored, and the model evaluated on the task.

checkpoint.py knows the file format and nothing of models; this module knows what a run is.
"""

import numpy as np

from . import checkpoint
from .data import CopyTask, decode_answer
from .nn.transformer import Transformer, TransformerConfig
from .tensor import Tensor


def make_task(options):
    """The task a run trains on, from its options (the train CLI's, as stored in the run)."""
    return CopyTask(options["num_symbols"], options["min_len"], options["max_len"], options["task"])


def load_run(path):
    """The trained model (eval mode), its task and the checkpoint's meta, from a run directory or file.

    CheckpointError if the checkpoint is missing, unreadable, or does not fit its own configuration.
    """
    model_state, _, meta = checkpoint.load(path)
    model = Transformer(TransformerConfig(**meta["model_config"]))
    try:
        model.load_state_dict(model_state)
    except ValueError as e:
        raise checkpoint.CheckpointError(f"{path} does not fit the model its configuration describes: {e}") from None
    return model.eval(), make_task(meta["options"]), meta


def load_run_or_exit(parser, path):
    """load_run for a command line: a bad checkpoint is a one-line error through `parser` (exit code 2)."""
    try:
        return load_run(path)
    except checkpoint.CheckpointError as e:
        parser.error(str(e))


def evaluate(model, task, sequences, batch_size=256):
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
