"""The training loop end to end on small copy tasks: learning, checkpoints, resume, interrupts, divergence."""

import errno
import io
import json
import os
import shutil
import signal
import stat
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tinygrad_attn import Tensor, checkpoint, manual_seed
from tinygrad_attn import pictures as pictures_cli
from tinygrad_attn import train as train_mod
from tinygrad_attn.nn.transformer import Transformer, TransformerConfig
from tinygrad_attn.runs import load_run

from run_testing import SMALL

STEP_BOUND = 100
# Variable lengths (left padding), dropout (tinygrad_attn's generator) and a low lr, so that it does not stop early.
RESUMABLE = ["--num-symbols", "6", "--min-len", "2", "--max-len", "5", "--d-model", "16", "--layers", "1",
             "--heads", "2", "--batch-size", "16", "--dropout", "0.1", "--lr", "1e-3", "--warmup", "5",
             "--steps", "30", "--eval-every", "10", "--eval-size", "16"]


def run(argv, out):
    """train() on parsed argv in run directory `out`; returns (result, printed text)."""
    stream = io.StringIO()
    result = train_mod.train(train_mod.parse_args([*argv, "--out", str(out)]), stream)
    return result, stream.getvalue()


def history(out):
    return json.loads((out / "history.json").read_text())


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result, text = run([*SMALL, "--steps", str(STEP_BOUND)], out)
    return out, result, text


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The RESUMABLE run, never interrupted: its history.json."""
    out = tmp_path_factory.mktemp("reference")
    result, _ = run(RESUMABLE, out)
    assert result["step"] == 30
    return history(out)


def test_small_mha_model_learns_to_copy_held_out_sequences(small_run):
    out, result, text = small_run
    assert result["exact_match"] == 1.0 and result["token_accuracy"] == 1.0
    assert result["step"] < STEP_BOUND  # stopped early, at the first evaluation with 100%
    assert "✓" in text and "✗" not in text
    assert sorted(os.listdir(out)) == ["attention.svg", "checkpoint.npz", "config.json", "curves.svg", "history.json"]
    log = history(out)
    assert log["eval"]["exact_match"][-1] == 1.0 and len(log["train"]["loss"]) == result["step"]
    assert log["train"]["loss"][-1] < log["train"]["loss"][0] / 5


def test_small_gqa_model_learns_to_copy_held_out_sequences(tmp_path):
    result, _ = run([*SMALL, "--attention", "gqa", "--kv-heads", "2", "--steps", str(STEP_BOUND)], tmp_path)
    assert result["exact_match"] == 1.0 and result["step"] < STEP_BOUND


def test_checkpoint_round_trip_is_bit_for_bit(small_run):
    out, _, _ = small_run
    model_state, optimizer_state, meta = checkpoint.load(out)
    assert meta["step"] == len(meta["history"]["train"]["step"]) and meta["done"]
    manual_seed(123)  # a different init, so that equality can only come from the loaded weights
    model = Transformer(TransformerConfig(**meta["model_config"]))
    model.load_state_dict(model_state)
    for name, array in model.state_dict().items():
        assert array.dtype == model_state[name].dtype and np.array_equal(array, model_state[name]), name
    # the same weights give the same logits as a second load, and the same greedy answers
    twin = Transformer(TransformerConfig(**meta["model_config"]))
    twin.load_state_dict(checkpoint.load(out / checkpoint.FILENAME)[0])
    idx = Tensor(np.random.default_rng(0).integers(0, 8, (3, 8)))
    assert np.array_equal(model(idx).numpy(), twin(idx).numpy())
    assert np.array_equal(model.generate(idx[:, :5], 4, temperature=0.0).numpy(),
                          twin.generate(idx[:, :5], 4, temperature=0.0).numpy())
    assert all(s["exp_avg"].dtype == np.float32 and int(s["step"]) == meta["step"] for s in optimizer_state["state"])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    state = {"hyperparams": {"lr": 0.1}, "state": [{}]}
    checkpoint.save(path, {"w": np.ones(3, np.float32)}, state, {"step": 1})

    def interrupted_savez(f, **arrays):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"w": np.zeros(3, np.float32)}, state, {"step": 2})
    model_state, _, meta = checkpoint.load(path)
    assert meta["step"] == 1 and np.array_equal(model_state["w"], np.ones(3))
    assert os.listdir(tmp_path) == ["checkpoint.npz"]  # no temporary file left behind


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_permissions_of_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        checkpoint.write_json(tmp_path / "config.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def interrupt_at(monkeypatch, n, action):
    """Make the n-th train_step call run `action` first (a signal, or raising KeyboardInterrupt)."""
    real_step, calls = train_mod.train_step, []

    def step(*args):
        calls.append(1)
        if len(calls) == n:
            action()
        return real_step(*args)

    monkeypatch.setattr(train_mod, "train_step", step)


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)


def raise_keyboard_interrupt():
    raise KeyboardInterrupt


def test_ctrl_c_checkpoints_the_step_it_ends_and_resume_reproduces_the_history(tmp_path, monkeypatch, reference,
                                                                               capsys):
    interrupt_at(monkeypatch, 25, ctrl_c)  # between checkpoints: step 25 is saved, not only step 20
    assert train_mod.main([*RESUMABLE, "--out", str(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert f"the checkpoint of step 25 in {tmp_path} is intact; continue with:" in out
    assert "-m tinygrad_attn.train --resume --out" in out
    assert checkpoint.load(tmp_path)[2]["step"] == 25
    assert len(history(tmp_path)["train"]["loss"]) == 25
    monkeypatch.undo()

    manual_seed(999)  # whatever the generator holds now, --resume restores it from the checkpoint
    resumed, text = run(["--resume"], tmp_path)  # no options: they come from the run
    assert "resuming" in text and resumed["step"] == 30
    assert history(tmp_path) == reference


def test_a_second_ctrl_c_stops_at_once_and_the_last_checkpoint_stays(tmp_path, monkeypatch, reference, capsys):
    interrupt_at(monkeypatch, 25, raise_keyboard_interrupt)  # as the second Ctrl-C does, in the middle of a step
    assert train_mod.main([*RESUMABLE, "--out", str(tmp_path)]) == 130
    assert f"the checkpoint of step 20 in {tmp_path} is intact" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "config.json", "history.json"]
    monkeypatch.undo()
    run(["--resume"], tmp_path)
    assert history(tmp_path) == reference


def test_a_second_ctrl_c_during_the_interrupt_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch, capsys):
    real_save = checkpoint.save

    def save_then_ctrl_c(*args):  # the checkpoint written on the first Ctrl-C is cut short by a second one
        if args[3]["step"] == 25:
            ctrl_c()
        real_save(*args)

    monkeypatch.setattr(checkpoint, "save", save_then_ctrl_c)
    interrupt_at(monkeypatch, 25, ctrl_c)
    assert train_mod.main([*RESUMABLE, "--out", str(tmp_path)]) == 130
    assert f"the checkpoint of step 20 in {tmp_path} is intact" in capsys.readouterr().out
    assert checkpoint.load(tmp_path)[2]["step"] == 20


def test_ctrl_c_just_after_a_checkpoint_reports_that_checkpoint(tmp_path, monkeypatch, capsys):
    real_write_json, calls = checkpoint.write_json, []

    def write_json(path, obj):  # config.json, then history.json after each checkpoint
        calls.append(path)
        if len(calls) == 3:  # after the checkpoint of step 20 was moved into place
            raise KeyboardInterrupt
        real_write_json(path, obj)

    monkeypatch.setattr(checkpoint, "write_json", write_json)
    assert train_mod.main([*RESUMABLE, "--out", str(tmp_path)]) == 130
    assert f"the checkpoint of step 20 in {tmp_path} is intact" in capsys.readouterr().out


def test_interrupt_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path, monkeypatch, capsys):
    interrupt_at(monkeypatch, 1, raise_keyboard_interrupt)
    assert train_mod.main([*SMALL, "--out", str(tmp_path)]) == 130
    assert "no checkpoint was written: nothing to resume" in capsys.readouterr().out
    assert os.listdir(tmp_path) == ["config.json"]


def test_divergence_stops_at_the_first_bad_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    assert train_mod.main([*SMALL, "--lr", "1e6", "--eval-every", "1", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error: training diverged: step " in err and "try a lower --lr than 1e+06" in err
    bad_step = int(err.split("training diverged: step ")[1].split()[0])
    assert "nan" in err or "inf" in err
    _, _, meta = checkpoint.load(tmp_path)
    assert meta["step"] == bad_step - 1 and f"the checkpoint of step {bad_step - 1}" in err
    assert len(meta["history"]["train"]["loss"]) == bad_step - 1
    assert all(np.isfinite(meta["history"]["train"]["loss"]))
    assert pictures_cli.main(["--checkpoint", str(tmp_path)]) == 0  # the run that diverged still draws


def test_weights_that_are_no_longer_finite_are_never_saved(tmp_path, monkeypatch, capsys):
    real_step = train_mod.train_step

    def poison_at_step_20(model, *args):
        result = real_step(model, *args)
        if args[-1] == 19:  # the 20th update: a loss and gradient that were finite, weights that are not
            model.trf_blocks[0].att.W_query.weight.data[0, 0] = np.inf
        return result

    monkeypatch.setattr(train_mod, "train_step", poison_at_step_20)
    assert train_mod.main([*RESUMABLE, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "the weights are no longer finite numbers after step 20" in err
    assert "the checkpoint of step 10" in err and checkpoint.load(tmp_path)[2]["step"] == 10


def test_pictures_skip_values_that_are_not_finite(small_run, tmp_path, capsys):
    out, _, _ = small_run
    shutil.copy(out / checkpoint.FILENAME, tmp_path)
    model, task, meta = load_run(tmp_path)
    log = meta["history"]
    log["train"]["loss"][3], log["train"]["grad_norm"][4], log["eval"]["exact_match"][0] = np.nan, np.inf, np.nan
    pictures_cli.write_pictures(tmp_path, model, task, log, *pictures_cli.example(task, 9, "1 2 3 4"))
    assert "NaN" not in (tmp_path / "curves.svg").read_text()


def test_a_full_disk_is_a_one_line_error_with_the_resume_hint(tmp_path, monkeypatch, capsys):
    real_savez, calls = checkpoint.np.savez, []

    def savez(f, **arrays):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_savez(f, **arrays)

    monkeypatch.setattr(checkpoint.np, "savez", savez)
    assert train_mod.main([*RESUMABLE, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: [Errno 28] No space left on device\n")
    assert f"the checkpoint of step 10 in {tmp_path} is intact; continue with:" in err
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "config.json", "history.json"]  # no temp file


def test_a_fresh_start_removes_leftovers_of_a_killed_run_and_stale_pictures(small_run, tmp_path, monkeypatch,
                                                                             capsys):
    out, _, _ = small_run
    for name in os.listdir(out):
        shutil.copy(out / name, tmp_path)
    for name in ("checkpoint.npz.k1l2_9x3.tmp", "history.json.abcdefgh.tmp"):  # what a kill -9 mid-write leaves
        (tmp_path / name).write_bytes(b"half a file")
    (tmp_path / "notes.tmp").write_text("not ours")
    (tmp_path / "attention.svg").write_text("an older picture")
    interrupt_at(monkeypatch, 5, ctrl_c)  # the same options, started afresh (no --resume), stopped at step 5
    assert train_mod.main([*SMALL, "--steps", str(STEP_BOUND), "--out", str(tmp_path)]) == 130
    text = capsys.readouterr().out
    assert ("removed the files of an earlier run from "
            f"{tmp_path}: checkpoint.npz.k1l2_9x3.tmp, history.json.abcdefgh.tmp, checkpoint.npz, history.json, "
            "attention.svg, curves.svg") in text
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "config.json", "history.json", "notes.tmp"]
    assert checkpoint.load(tmp_path)[2]["step"] == 5


def test_resume_removes_leftovers_too(tmp_path, reference, capsys):
    run([*RESUMABLE, "--steps", "30"], tmp_path)
    (tmp_path / "checkpoint.npz.zzzzzzzz.tmp").write_bytes(b"PK")
    assert train_mod.main(["--resume", "--out", str(tmp_path)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_resume_rejects_missing_truncated_and_mismatched_checkpoints(small_run, tmp_path, capsys):
    out, _, _ = small_run
    with pytest.raises(SystemExit) as exit_info:
        train_mod.main(["--out", str(tmp_path / "none"), "--resume"])
    assert exit_info.value.code == 2 and "cannot resume: no checkpoint at" in capsys.readouterr().err

    data = (out / checkpoint.FILENAME).read_bytes()
    (tmp_path / checkpoint.FILENAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated"):
        checkpoint.load(tmp_path)
    with pytest.raises(SystemExit):
        train_mod.main(["--out", str(tmp_path), "--resume"])
    assert "truncated" in capsys.readouterr().err

    # train() itself, given options that differ from the checkpoint's, refuses too
    args = train_mod.parse_args(["--resume", "--out", str(out)])
    args.d_model = 16
    with pytest.raises(checkpoint.CheckpointError, match=r"--d-model 32 \(now 16\)"):
        train_mod.train(args, io.StringIO())


def test_every_run_ends_with_attention_heatmaps_and_curves(small_run):
    out, _, text = small_run
    for name in ("attention.svg", "curves.svg"):
        assert ET.parse(out / name).getroot().tag == "{http://www.w3.org/2000/svg}svg"
        assert name in text  # listed with the run directory
    heatmap = (out / "attention.svg").read_text()
    assert ">SEP<" in heatmap and "layer" in heatmap.lower()
