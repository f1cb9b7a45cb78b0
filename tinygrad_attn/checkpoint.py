"""A training checkpoint: one .npz file, replaced atomically, so an interrupt never leaves half of one.

The file holds everything a run needs to continue exactly where it stopped:

    model/<name>            the model's state_dict() arrays
    optimizer/<i>/<key>     the optimizer's per-parameter state (moments, step counts)
    meta                    a JSON object: configuration, step, RNG states, history, ...

It is written to a temporary file in the same directory and moved over the old one with
os.replace, which is atomic on POSIX and Windows: a reader sees the old checkpoint or the
new one, never a mix. `write_json` does the same for the small human-readable files. A
kill -9 in the middle of a write leaves only the temporary file, which `remove_leftovers`
clears at the next start.

Reading trusts nothing in the file: whatever is wrong with it (not a zip, truncated, a flipped
bit, an array whose header asks for more bytes than the file holds, meta that is not an
object) is a CheckpointError naming the path, raised before numpy allocates anything the
file's headers ask for. What the meta entries mean is the caller's business (runs.py).
"""

import json
import math
import os
import re
import struct
import tempfile
import zipfile

import numpy as np

FORMAT = 1
FILENAME = "checkpoint.npz"
# The entries save() adds to the caller's meta, and their types.
_OWN_META = {"format": int, "optimizer_hyperparams": dict, "optimizer_num_params": int}
# The temporary files of _atomic_write: mkstemp puts 8 random characters between prefix and suffix.
_TEMPORARY = re.compile(r".+\.[a-z0-9_]{8}\.tmp")
_OPTIMIZER_KEY = re.compile(r"optimizer/(\d+)/(.+)")
# What reading a damaged zip or .npy can raise, from zipfile, numpy's header parser and struct.
_UNREADABLE = (OSError, EOFError, ValueError, SyntaxError, zipfile.BadZipFile, NotImplementedError, RuntimeError,
               struct.error, OverflowError)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the run that loads it."""


def file_mode():
    """The permissions the user's umask gives a new file (mkstemp's own are 0600, private)."""
    umask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path, write):
    """Call write(file) on a temporary file next to `path`, then move it over `path`."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:  # incl. KeyboardInterrupt: leave the old file alone and no temp file behind
        os.unlink(tmp)
        raise


def remove_leftovers(directory):
    """Delete the temporary files that writes cut short by kill -9 left in `directory`; returns their names."""
    names = sorted(name for name in os.listdir(directory) if _TEMPORARY.fullmatch(name))
    for name in names:
        os.remove(os.path.join(directory, name))
    return names


def write_json(path, obj):
    """Write obj as indented JSON, atomically."""
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save(path, model_state, optimizer_state, meta):
    """Write a checkpoint atomically.

    model_state: {name: np.ndarray} (Module.state_dict()); optimizer_state: Optimizer.state_dict();
    meta: a dict JSON can hold (Python ints of any size, so numpy bit_generator.state fits).
    """
    arrays = {f"model/{name}": a for name, a in model_state.items()}
    for i, state in enumerate(optimizer_state["state"]):
        arrays.update({f"optimizer/{i}/{key}": a for key, a in state.items()})
    meta = dict(meta, format=FORMAT, optimizer_hyperparams=optimizer_state["hyperparams"],
                optimizer_num_params=len(optimizer_state["state"]))
    arrays["meta"] = np.array(json.dumps(meta))
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def _file(path):
    """The checkpoint file for a file or run directory `path`; CheckpointError if there is none."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, FILENAME)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def _read_array(archive, info, size):
    """One member of the archive as an array, its header checked before numpy allocates it: a .npy
    stored uncompressed (as np.savez writes), of numbers (meta: a string), holding exactly the bytes
    its shape asks for."""
    if not info.filename.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
        raise ValueError(f"{info.filename!r:.60} is not an uncompressed .npy of at most the file's size")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{info.filename} is a .npy of version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        kinds = "U" if info.filename == "meta.npy" else "biuf"  # bool, integers, floats; no objects (pickles)
        if dtype.kind not in kinds:
            raise ValueError(f"{info.filename} holds {dtype}, not {'a string' if kinds == 'U' else 'numbers'}")
        if math.prod(shape) * dtype.itemsize != info.file_size - f.tell():
            raise ValueError(f"{info.filename}'s header asks for {shape} {dtype}, but it holds "
                             f"{info.file_size - f.tell()} bytes")
        f.seek(0)
        array = np.lib.format.read_array(f, allow_pickle=False)
        f.read()  # to the end, where zipfile checks the CRC: a flipped bit in the data fails here
    return array


def _read(path, names=None):
    """{name: array} of the members of the checkpoint file at `path` (only those in `names` if given)."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist() if names is None else [archive.getinfo(f"{name}.npy") for name in names]
            return {info.filename[:-len(".npy")]: _read_array(archive, info, os.path.getsize(path)) for info in infos}
    except KeyError:  # from getinfo: a member in `names` is missing
        missing = " or ".join(names)
        raise CheckpointError(f"{path} is not a tinygrad_attn checkpoint: it has no {missing} entry") from None
    except _UNREADABLE as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {e!s:.150}") from None


def read_meta(path):
    """Only the meta of the checkpoint at `path` (a file or run directory), checked as load() checks it."""
    path = _file(path)
    return _parse_meta(path, _read(path, ["meta"])["meta"])


def _parse_meta(path, array):
    """The meta dict from its 0-d string array, with save()'s own entries checked."""
    try:
        meta = json.loads(str(array))
    except ValueError as e:
        raise CheckpointError(f"{path} is not a tinygrad_attn checkpoint: its meta is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a tinygrad_attn checkpoint: its meta is a JSON {type(meta).__name__}, "
                              "not an object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r:.40}; this code reads "
                              f"format {FORMAT}")
    for key, kind in _OWN_META.items():
        if type(meta.get(key)) is not kind:
            raise CheckpointError(f"{path}: meta entry {key!r} should be a {kind.__name__}, got {meta.get(key)!r:.60}")
    return meta


def load(path):
    """Read a checkpoint written by save(): returns (model_state, optimizer_state, meta).

    `path` is the file or the run directory holding it. A missing, unreadable, incomplete or
    inconsistent file raises CheckpointError naming the path and what is wrong.
    """
    path = _file(path)
    arrays = _read(path)
    if "meta" not in arrays:
        raise CheckpointError(f"{path} is not a tinygrad_attn checkpoint: it has no meta entry")
    meta = _parse_meta(path, arrays.pop("meta"))
    num_params = meta["optimizer_num_params"]
    if not 0 <= num_params <= len(arrays):
        raise CheckpointError(f"{path}: meta says the optimizer has {num_params} parameters; the file has "
                              f"{len(arrays)} arrays")
    model_state, states = {}, [{} for _ in range(num_params)]
    for key, a in arrays.items():
        match = _OPTIMIZER_KEY.fullmatch(key)
        if key.startswith("model/"):
            model_state[key[len("model/"):]] = a
        elif match and int(match[1]) < num_params:
            states[int(match[1])][match[2]] = a
        else:
            raise CheckpointError(f"{path}: unexpected entry {key!r:.60} (entries are meta, model/<name> and "
                                  f"optimizer/<i>/<name> with i < {num_params})")
    return model_state, {"hyperparams": meta["optimizer_hyperparams"], "state": states}, meta
