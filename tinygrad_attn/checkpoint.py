"""A training checkpoint: one .npz file, replaced atomically, so an interrupt never leaves half of one.

The file holds everything a run needs to continue exactly where it stopped:

    model/<name>            the model's state_dict() arrays
    optimizer/<i>/<key>     the optimizer's per-parameter state (moments, step counts)
    meta                    a JSON string: configuration, step, RNG states, history, ...

It is written to a temporary file in the same directory and moved over the old one with
os.replace, which is atomic on POSIX and Windows: a reader sees the old checkpoint or the
new one, never a mix. `write_json` does the same for the small human-readable files.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = 1
FILENAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the run that loads it."""


def _atomic_write(path, write):
    """Call write(file) on a temporary file next to `path`, then move it over `path`."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # incl. KeyboardInterrupt: leave the old file alone and no temp file behind
        os.unlink(tmp)
        raise


def write_json(path, obj):
    """Write obj as indented JSON, atomically."""
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save(path, model_state, optimizer_state, meta):
    """Write a checkpoint atomically.

    model_state: {name: np.ndarray} (Module.state_dict()); optimizer_state: Optimizer.state_dict();
    meta: anything JSON can hold (Python ints of any size, so numpy bit_generator.state fits).
    """
    arrays = {f"model/{name}": a for name, a in model_state.items()}
    for i, state in enumerate(optimizer_state["state"]):
        arrays.update({f"optimizer/{i}/{key}": a for key, a in state.items()})
    meta = dict(meta, format=FORMAT, optimizer_hyperparams=optimizer_state["hyperparams"],
                optimizer_num_params=len(optimizer_state["state"]))
    arrays["meta"] = np.array(json.dumps(meta))
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path):
    """Read a checkpoint written by save(): returns (model_state, optimizer_state, meta).

    `path` is the file or the run directory holding it. A missing, unreadable or incomplete
    file raises CheckpointError naming the path.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, FILENAME)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}  # reads every member: a truncated file fails here
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {e}") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} is not a tinygrad_attn checkpoint: no readable 'meta' entry ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; this code reads format {FORMAT}")
    model_state = {key[len("model/"):]: a for key, a in arrays.items() if key.startswith("model/")}
    states = [{} for _ in range(meta["optimizer_num_params"])]
    for key, a in arrays.items():
        if key.startswith("optimizer/"):
            _, i, name = key.split("/", 2)
            states[int(i)][name] = a
    return model_state, {"hyperparams": meta["optimizer_hyperparams"], "state": states}, meta
