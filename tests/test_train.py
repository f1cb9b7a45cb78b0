"""The training loop end to end on small copy tasks: learning, checkpoints, resume, the CLIs."""

import io
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tinygrad_attn import Tensor, checkpoint, manual_seed
from tinygrad_attn import pictures as pictures_cli
from tinygrad_attn import sample as sample_cli
from tinygrad_attn import train as train_mod
from tinygrad_attn.data import CopyTask
from tinygrad_attn.nn.transformer import Transformer, TransformerConfig

# A task small enough to learn in tens of steps: 6 symbols, 4 at a time, a 2-layer d_model 32 model.
SMALL = ["--num-symbols", "6", "--seq-len", "4", "--d-model", "32", "--layers", "2", "--heads", "4",
         "--lr", "1e-2", "--warmup", "10", "--eval-every", "10", "--eval-size", "64"]
STEP_BOUND = 100


def run(argv, out):
    """train() on parsed argv in run directory `out`; returns (result, printed text)."""
    stream = io.StringIO()
    result = train_mod.train(train_mod.parse_args([*argv, "--out", str(out)]), argv, stream)
    return result, stream.getvalue()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result, text = run([*SMALL, "--steps", str(STEP_BOUND)], out)
    return out, result, text


def test_small_mha_model_learns_to_copy_held_out_sequences(small_run):
    out, result, text = small_run
    assert result["exact_match"] == 1.0 and result["token_accuracy"] == 1.0
    assert result["step"] < STEP_BOUND  # stopped early, at the first evaluation with 100%
    assert "✓" in text and "✗" not in text
    assert sorted(os.listdir(out)) == ["attention.svg", "checkpoint.npz", "config.json", "curves.svg", "history.json"]
    history = json.loads((out / "history.json").read_text())
    assert history["eval"]["exact_match"][-1] == 1.0 and len(history["train"]["loss"]) == result["step"]
    assert history["train"]["loss"][-1] < history["train"]["loss"][0] / 5


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


def test_resume_continues_the_same_loss_history(tmp_path, monkeypatch):
    # variable lengths (left padding), dropout (tinygrad_attn's generator) and a low lr, so it does not stop early
    argv = ["--num-symbols", "6", "--min-len", "2", "--max-len", "5", "--d-model", "16", "--layers", "1",
            "--heads", "2", "--dropout", "0.1", "--lr", "1e-3", "--warmup", "5", "--steps", "30",
            "--eval-every", "10", "--eval-size", "16"]
    full, _ = run(argv, tmp_path / "full")
    reference = json.loads((tmp_path / "full" / "history.json").read_text())
    assert full["step"] == 30

    real_step, calls = train_mod.train_step, []

    def interrupt_at_step_25(*args):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(train_mod, "train_step", interrupt_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        run(argv, tmp_path / "cut")
    monkeypatch.setattr(train_mod, "train_step", real_step)
    assert checkpoint.load(tmp_path / "cut")[2]["step"] == 20  # the last complete checkpoint is intact
    assert sorted(os.listdir(tmp_path / "cut")) == ["checkpoint.npz", "config.json", "history.json"]

    manual_seed(999)  # whatever the generator holds now, --resume restores it from the checkpoint
    resumed, text = run([*argv, "--resume"], tmp_path / "cut")
    assert "resuming" in text and resumed["step"] == 30
    assert json.loads((tmp_path / "cut" / "history.json").read_text()) == reference


def test_fresh_run_removes_an_older_run_and_interrupt_before_a_checkpoint_says_so(small_run, tmp_path, monkeypatch,
                                                                                    capsys):
    old, _, _ = small_run
    for name in (checkpoint.FILENAME, "history.json"):
        (tmp_path / name).write_bytes((old / name).read_bytes())

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train_step", interrupt)
    assert train_mod.main([*SMALL, "--out", str(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert "removed the earlier run's checkpoint.npz and history.json" in out and "nothing to resume" in out
    assert os.listdir(tmp_path) == ["config.json"]


@pytest.mark.parametrize("argv,message", [
    (["--attention", "gqa", "--heads", "4", "--kv-heads", "3"], "--kv-heads 3 does not divide --heads 4"),
    (["--d-model", "30", "--heads", "4"], "--d-model 30 is not divisible by --heads 4"),
    (["--max-len", "10", "--context-length", "16"], "need a context of 21 tokens"),
    (["--attention", "mha", "--heads", "4", "--kv-heads", "2"], "--attention mha means --kv-heads 4"),
    (["--positions", "rope", "--d-model", "12", "--heads", "4"], "even head_dim"),
    (["--min-len", "6", "--max-len", "5"], "--max-len 5 is shorter than --min-len 6"),
    (["--warmup", "200", "--steps", "100"], "--warmup 200"),
    (["--dropout", "1.5"], "dropout"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--task", "sort"], "invalid choice"),
])
def test_cli_rejects_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_mod.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()[-1]) < 200


def test_cli_as_a_program():
    cmd = [sys.executable, "-m", "tinygrad_attn.train"]
    bad = subprocess.run([*cmd, "--d-model", "30"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not divisible by --heads 4" in bad.stderr
    help_text = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--kv-heads" in help_text.stdout and "--resume" in help_text.stdout


def test_resume_rejects_missing_truncated_and_mismatched_checkpoints(small_run, tmp_path, capsys):
    out, _, _ = small_run
    assert train_mod.main([*SMALL, "--out", str(tmp_path / "none"), "--resume"]) == 1
    assert "no checkpoint at" in capsys.readouterr().err

    data = (out / checkpoint.FILENAME).read_bytes()
    (tmp_path / checkpoint.FILENAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated"):
        checkpoint.load(tmp_path)
    assert train_mod.main([*SMALL, "--out", str(tmp_path), "--resume"]) == 1
    assert "truncated" in capsys.readouterr().err

    assert train_mod.main([*SMALL, "--d-model", "16", "--out", str(out), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "--d-model 32 (now 16)" in err and "repeat the original options" in err


def test_sample_cli(small_run, capsys):
    out, _, _ = small_run
    task = CopyTask(num_symbols=6, min_len=4)
    heldout = task.heldout_set(np.random.default_rng(0), 1)[0]
    text = " ".join(map(str, heldout))
    assert sample_cli.main(["--checkpoint", str(out), text]) == 0
    assert capsys.readouterr().out.startswith(f"{text} -> {text}  ✓  (held out")
    for bad, message in [("1 2 9 3", "symbol 9 is outside the vocabulary: symbols are 0..5"),
                         ("1 2 3 4 5", "5 symbols need a context of 11 tokens")]:
        with pytest.raises(SystemExit) as exit_info:
            sample_cli.main(["--checkpoint", str(out), bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_redraws_one_line_on_a_terminal_and_prints_plain_lines_elsewhere():
    tty, pipe = FakeTerminal(), io.StringIO()
    for stream in (tty, pipe):
        progress = train_mod.Progress(stream, total=10, first_step=0)
        progress.update(1, 2.5, None)
        progress.update(2, 2.25, 0.5)
        progress.line("step 2/10 evaluated")
    assert tty.getvalue().startswith("\rstep 1/10  loss 2.5000  held-out exact -  ")
    assert "\rstep 2/10  loss 2.2500  held-out exact 50.0%" in tty.getvalue()
    assert tty.getvalue().endswith("\rstep 2/10 evaluated\n")
    assert pipe.getvalue() == "step 2/10 evaluated\n"


def test_every_run_ends_with_attention_heatmaps_and_curves(small_run):
    out, _, text = small_run
    for name in ("attention.svg", "curves.svg"):
        assert ET.parse(out / name).getroot().tag == "{http://www.w3.org/2000/svg}svg"
        assert name in text  # listed with the run directory
    heatmap = (out / "attention.svg").read_text()
    assert ">SEP<" in heatmap and "layer" in heatmap.lower()


def test_pictures_cli_redraws_any_checkpoint(small_run, tmp_path, capsys):
    out, _, _ = small_run
    shutil.copy(out / "checkpoint.npz", tmp_path / "checkpoint.npz")
    assert pictures_cli.main(["--checkpoint", str(tmp_path), "--example", "1 2 3"]) == 0
    assert (tmp_path / "attention.svg").exists() and (tmp_path / "curves.svg").exists()
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        pictures_cli.main(["--checkpoint", str(tmp_path), "--example", "1 2 99"])  # not a symbol
    with pytest.raises(SystemExit):
        pictures_cli.main(["--checkpoint", str(tmp_path / "missing")])
