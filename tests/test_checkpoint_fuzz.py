"""Checkpoint fuzzing: every damaged or crafted file is a CheckpointError with a clear message, on every
path that reads one (sample and pictures: runs.load_run; train: read_meta, parse_args --resume, resume),
and nothing large is allocated before the file is validated.

A fixed, seeded budget: 120 truncations, 240 single-bit flips (half of them in the zip and .npy
headers), 9 wrong kinds of file, 50 crafted metas and arrays, 7 files only --resume can refuse, and
two files whose headers ask for gigabytes; a flip that lands where nothing is read (a timestamp, say)
must load exactly the original content.
"""

import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from tinygrad_attn import checkpoint, runs
from tinygrad_attn import train as train_mod

TINY = ["--num-symbols", "4", "--seq-len", "3", "--d-model", "8", "--layers", "1", "--heads", "2", "--batch-size",
        "4", "--steps", "2", "--warmup", "1", "--eval-every", "1", "--eval-size", "4"]
rng = np.random.default_rng(15)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(the bytes of a real checkpoint, what load() gives for it)."""
    out = tmp_path_factory.mktemp("good")
    train_mod.train(train_mod.parse_args([*TINY, "--out", str(out)]), io.StringIO())
    data = (out / checkpoint.FILENAME).read_bytes()
    return data, checkpoint.load(out)


def same(a, b):
    """Two load() results hold the same arrays and meta."""
    (ma, oa, meta_a), (mb, ob, meta_b) = a, b
    return (meta_a == meta_b and ma.keys() == mb.keys() and all(np.array_equal(ma[k], mb[k]) for k in ma)
            and [s.keys() for s in oa["state"]] == [s.keys() for s in ob["state"]]
            and all(np.array_equal(x[k], y[k]) for x, y in zip(oa["state"], ob["state"]) for k in x))


def refused(path, error):
    """The message is one clear line that names the file."""
    message = str(error)
    return str(path) in message and "\n" not in message and len(message) < 400


READERS = (checkpoint.load, runs.load_run, checkpoint.read_meta)


def check_every_reader(path, original=None, readers=READERS):
    """Each reader refuses `path` with a clear CheckpointError, or (only if `original` is given) loads it
    exactly as the original. Returns a description of what went wrong, or None."""
    for read in readers:
        try:
            result = read(path)
        except checkpoint.CheckpointError as e:
            if not refused(path, e):
                return f"{read.__qualname__}: unclear message {e}"
            continue
        except Exception as e:  # noqa: BLE001 -- the point of the test: nothing else may escape
            return f"{read.__qualname__} raised {type(e).__name__}: {e}"
        if original is None:
            return f"{read.__qualname__} accepted it"
        if read is checkpoint.load and not same(result, original):
            return "loaded, but not the original content"
    return None


def test_truncated_files_are_refused(good, tmp_path):
    data, _ = good
    path = tmp_path / checkpoint.FILENAME
    lengths = sorted({0, 1, 21, 22, len(data) - 22, len(data) - 1, *rng.integers(0, len(data), 114).tolist()})
    problems = []
    for n in lengths:
        path.write_bytes(data[:n])
        problem = check_every_reader(path)
        if problem:
            problems.append(f"{n} bytes: {problem}")
    assert len(lengths) >= 115 and not problems, problems[:5]


def header_offsets(data):
    """The byte ranges of the zip's local headers with the .npy headers after them, and of its central directory."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        central = archive.start_dir
    return [(info.header_offset, info.header_offset + 30 + len(info.filename) + 128) for info in infos] + \
        [(central, len(data))]


def test_single_bit_flips_are_refused_or_harmless(good, tmp_path):
    data, original = good
    path = tmp_path / checkpoint.FILENAME
    ranges = header_offsets(data)
    anywhere = rng.integers(0, len(data), 120)
    in_headers = [rng.integers(*ranges[i]) for i in rng.integers(0, len(ranges), 120)]
    problems, outcomes = [], {"refused": 0, "harmless": 0}
    for position in [*anywhere, *in_headers]:
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        problem = check_every_reader(path, original)
        if problem:
            problems.append(f"bit at byte {position}: {problem}")
        try:
            checkpoint.load(path)
            outcomes["harmless"] += 1
        except checkpoint.CheckpointError:
            outcomes["refused"] += 1
    assert not problems, problems[:5]
    assert outcomes["refused"] > 150 and outcomes["harmless"] > 0, outcomes  # most flips are caught (CRC, headers)


def save_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _npy(array):
    """The bytes of `array` as a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def huge_npy():
    """A .npy whose header asks for 10**12 float32s (4 TB) and which holds 8 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)})
    return buffer.getvalue() + bytes(8)


def zip_of(members, compression=zipfile.ZIP_STORED):
    """A writer of a zip file with these {name: bytes} members."""
    def write(path):
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, content in members.items():
                archive.writestr(name, content)
    return write


def wrong_kinds(data):
    """(name, writer) of files that are not checkpoints at all."""
    meta = zipfile.ZipFile(io.BytesIO(data)).read("meta.npy")
    return [
        ("empty", lambda p: p.write_bytes(b"")),
        ("text", lambda p: p.write_text("weights: lots\n")),
        ("a .npy named checkpoint.npz", lambda p: p.write_bytes(_npy(np.zeros(3)))),
        ("random bytes", lambda p: p.write_bytes(rng.bytes(5000))),
        ("a zip of text", zip_of({"readme.txt": "hello"})),
        ("a zip without meta", zip_of({"model/w.npy": _npy(np.zeros(3, np.float32))})),
        ("a compressed npz", zip_of({"meta.npy": meta}, zipfile.ZIP_DEFLATED)),
        ("an object array (a pickle)", lambda p: save_npz(p, meta=np.array("{}"),
                                                          **{"model/w": np.array([{"x": 1}], dtype=object)})),
        ("a directory", lambda p: p.mkdir()),
    ]


def test_wrong_kinds_of_file_are_refused(good, tmp_path):
    data, _ = good
    problems = []
    for i, (name, write) in enumerate(wrong_kinds(data)):
        path = tmp_path / str(i) / checkpoint.FILENAME
        path.parent.mkdir()
        write(path)
        problem = check_every_reader(path)
        if problem:
            problems.append(f"{name}: {problem}")
    assert not problems, problems


def crafted_cases(original):
    """(name, model_state, optimizer_state, meta) of files that are valid zips of arrays with something wrong."""
    model_state, optimizer_state, meta = original
    meta = {k: v for k, v in meta.items() if k not in ("format", "optimizer_hyperparams", "optimizer_num_params")}
    config, options, first = meta["model_config"], meta["options"], next(iter(model_state))

    def with_meta(**changes):
        return model_state, optimizer_state, dict(meta, **changes)

    cases = [(f"no {key}", model_state, optimizer_state, {k: v for k, v in meta.items() if k != key})
             for key in runs.META]
    cases += [(f"{key} of a wrong type", *with_meta(**{key: "x"})) for key in runs.META]
    cases += [(f"model_config {name}", *with_meta(model_config=dict(config, **change))) for name, change in [
        ("context_length 200000", {"context_length": 200000}), ("an unknown key", {"flash": True}),
        ("d_model 'wide'", {"d_model": "wide"}), ("num_layers 0", {"num_layers": 0}),
        ("2**20 wide", {"d_model": 2 ** 20, "num_heads": 1}), ("vocab_size 3", {"vocab_size": 3}),
        ("context_length 5", {"context_length": 5}), ("positions 'none'", {"positions": "none"}),
        ("dropout 'x'", {"dropout": "x"}), ("missing vocab_size", {"vocab_size": None})]]
    cases.append(("model_config a list", *with_meta(model_config=[1, 2])))
    cases += [(f"options {name}", *with_meta(options=dict(options, **change))) for name, change in [
        ("num_symbols '4'", {"num_symbols": "4"}), ("max_len 10**9", {"min_len": 1, "max_len": 10 ** 9}),
        ("task 'sort'", {"task": "sort"}), ("num_symbols 1", {"num_symbols": 1})]]
    cases += [(f"history {name}", *with_meta(history=history)) for name, history in [
        ("without eval", {"train": meta["history"]["train"]}),
        ("of strings", dict(meta["history"], train=dict(meta["history"]["train"], loss=["a"] * 2))),
        ("of unequal lengths", dict(meta["history"], train=dict(meta["history"]["train"], lr=[0.1])))]]
    cases += [
        ("a weight of another shape", {**model_state, first: np.zeros((3, 3), np.float32)}, optimizer_state, meta),
        ("a missing weight", {k: v for k, v in model_state.items() if k != first}, optimizer_state, meta),
        ("a weight of strings", {**model_state, first: np.full(model_state[first].shape, "w")}, optimizer_state,
         meta),
        ("NaN weights", {**model_state, first: np.full(model_state[first].shape, np.nan, np.float32)},
         optimizer_state, meta),
        ("a complex weight", {**model_state, first: model_state[first].astype(np.complex64)}, optimizer_state, meta),
    ]
    return cases


def format_cases(good_data):
    """(name, writer) of .npz files whose checkpoint format itself is wrong."""
    meta = json.loads(str(np.load(io.BytesIO(good_data))["meta"]))
    arrays = dict(np.load(io.BytesIO(good_data)))
    arrays.pop("meta")

    def npz(meta_value, **extra):
        return lambda p: save_npz(p, meta=np.array(meta_value), **arrays, **extra)

    in_meta, elsewhere = READERS, READERS[:2]  # read_meta reads the meta alone: the rest is not its business
    return [
        ("meta a JSON list", npz(json.dumps([1, 2])), in_meta), ("meta a JSON number", npz("3"), in_meta),
        ("meta not JSON", npz("{format: 1"), in_meta),
        ("meta of numbers", lambda p: save_npz(p, meta=np.zeros(3), **arrays), in_meta),
        ("format 2", npz(json.dumps(dict(meta, format=2))), in_meta),
        ("optimizer_num_params '2'", npz(json.dumps(dict(meta, optimizer_num_params="2"))), in_meta),
        ("optimizer_hyperparams a list", npz(json.dumps(dict(meta, optimizer_hyperparams=[0.1]))), in_meta),
        ("optimizer_num_params 10**12", npz(json.dumps(dict(meta, optimizer_num_params=10 ** 12))), elsewhere),
        ("optimizer_num_params -1", npz(json.dumps(dict(meta, optimizer_num_params=-1))), elsewhere),
        ("a key optimizer/x/exp_avg", npz(json.dumps(meta), **{"optimizer/x/exp_avg": np.zeros(2)}), elsewhere),
        ("a key optimizer/99/exp_avg", npz(json.dumps(meta), **{"optimizer/99/exp_avg": np.zeros(2)}), elsewhere),
        ("a key of another kind", npz(json.dumps(meta), **{"weights": np.zeros(2)}), elsewhere),
        ("a .npy header asking for 4 TB", zip_of({"meta.npy": _npy(np.array(json.dumps(meta))),
                                                  "model/w.npy": huge_npy()}), elsewhere),
    ]


def test_crafted_files_are_refused_by_every_reader(good, tmp_path):
    data, original = good
    problems, count = [], 0
    for i, (name, *contents) in enumerate(crafted_cases(original)):
        path = tmp_path / f"c{i}" / checkpoint.FILENAME
        path.parent.mkdir()
        checkpoint.save(path, *contents)
        problem = check_every_reader(path, readers=[runs.load_run])  # a sound file: what a run is, is wrong
        if problem:
            problems.append(f"{name}: {problem}")
        count += 1
    for i, (name, write, readers) in enumerate(format_cases(data)):
        path = tmp_path / f"f{i}" / checkpoint.FILENAME
        path.parent.mkdir()
        write(path)
        problem = check_every_reader(path, readers=readers)
        if problem:
            problems.append(f"{name}: {problem}")
        count += 1
    assert count == 50 and not problems, problems


def resume_cases(original):
    """(name, model_state, optimizer_state, meta): files that load_run accepts, but --resume must refuse."""
    model_state, optimizer_state, meta = original
    meta = {k: v for k, v in meta.items() if k not in ("format", "optimizer_hyperparams", "optimizer_num_params")}
    state = optimizer_state["state"]
    return [
        ("a data_rng of another generator", model_state, optimizer_state, dict(meta, data_rng={"bit_generator": "MT"})),
        ("a model_rng without its state", model_state, optimizer_state,
         dict(meta, model_rng={"bit_generator": "PCG64"})),
        ("a history shorter than its step", model_state, optimizer_state, dict(meta, step=meta["step"] + 1)),
        ("AdamW state without exp_avg_sq", model_state,
         dict(optimizer_state, state=[{k: v for k, v in s.items() if k != "exp_avg_sq"} for s in state]), meta),
        ("AdamW moments of ints", model_state,
         dict(optimizer_state, state=[dict(s, exp_avg=s["exp_avg"].astype(np.int64)) for s in state]), meta),
        ("other betas", model_state, dict(optimizer_state, hyperparams=dict(optimizer_state["hyperparams"],
                                                                            betas=[0.5, 0.5])), meta),
        ("one parameter's state too few", model_state, dict(optimizer_state, state=state[:-1]), meta),
    ]


def test_resume_refuses_what_only_training_would_trip_on(good, tmp_path, capsys):
    _, original = good
    problems = []
    for i, (name, *contents) in enumerate(resume_cases(original)):
        out = tmp_path / f"r{i}"
        out.mkdir()
        checkpoint.save(out / checkpoint.FILENAME, *contents)
        try:
            args = train_mod.parse_args(["--resume", "--out", str(out)])
            args.resume = True
            train_mod.resume(str(out / checkpoint.FILENAME), args, *_fresh(args))
            problems.append(f"{name}: accepted")
        except checkpoint.CheckpointError as e:
            if not refused(out, e):
                problems.append(f"{name}: unclear message {e}")
        except SystemExit:  # parse_args refused it in one line
            if str(out) not in capsys.readouterr().err.splitlines()[-1]:
                problems.append(f"{name}: parse_args error without the path")
        except Exception as e:  # noqa: BLE001
            problems.append(f"{name}: {type(e).__name__}: {e}")
    assert not problems, problems


def _fresh(args):
    """The model, optimizer and data generator train() builds for args."""
    model = train_mod.Transformer(train_mod.make_model_config(args, runs.make_task(vars(args)).vocab_size))
    return model, train_mod.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay), \
        np.random.default_rng(0)


def test_a_huge_context_length_is_refused_before_the_model_is_built(good, tmp_path, monkeypatch):
    _, (model_state, optimizer_state, meta) = good
    meta = dict(meta, model_config=dict(meta["model_config"], context_length=200000))  # a 37 GiB causal mask
    checkpoint.save(tmp_path / checkpoint.FILENAME, model_state, optimizer_state, meta)

    def no_model(config):
        raise AssertionError("the model was built before its configuration was checked")

    monkeypatch.setattr(runs, "Transformer", no_model)
    tracemalloc.start()
    with pytest.raises(checkpoint.CheckpointError, match="context_length=200000 is more than 4096"):
        runs.load_run(tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2 ** 20


def test_a_huge_array_header_is_refused_before_numpy_allocates_it(tmp_path):
    path = tmp_path / checkpoint.FILENAME
    zip_of({"meta.npy": _npy(np.array("{}")), "model/w.npy": huge_npy()})(path)
    tracemalloc.start()
    with pytest.raises(checkpoint.CheckpointError, match=r"header asks for \(1000000000000,\) float32, but it holds 8"):
        checkpoint.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2 ** 20
