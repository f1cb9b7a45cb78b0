"""The commands as a user meets them: options refused up front in one line, run directories that never
replace another run, resume without repeating options, 80-column output, hints spelled as the user
types commands, and sample and pictures that say what the checkpoint is and label what they show."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_attn import checkpoint, runs
from tinygrad_attn import pictures as pictures_cli
from tinygrad_attn import sample as sample_cli
from tinygrad_attn import train as train_mod
from tinygrad_attn.data import CopyTask

from run_testing import SMALL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished small run, and one stopped at step 10 (its first checkpoint) of 100."""
    root = tmp_path_factory.mktemp("runs")
    train_mod.train(train_mod.parse_args([*SMALL, "--steps", "100", "--out", str(root / "done")]), io.StringIO())
    train_mod.train(train_mod.parse_args([*SMALL, "--steps", "10", "--out", str(root / "cut")]), io.StringIO())
    meta = checkpoint.read_meta(root / "cut")  # made to look like a run of 100 steps that was stopped at step 10
    model_state, optimizer_state, _ = checkpoint.load(root / "cut")
    checkpoint.save(root / "cut" / checkpoint.FILENAME, model_state, optimizer_state,
                    dict(meta, done=False, options=dict(meta["options"], steps=100)))
    return root / "done", root / "cut"


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
    (["--lr", "inf"], "need finite numbers with --lr > 0"),
    (["--lr", "nan"], "need finite numbers with --lr > 0"),
    (["--weight-decay", "inf"], "need finite numbers"),
    (["--weight-decay", "nan"], "need finite numbers"),
    (["--clip", "inf"], "need finite numbers"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--num-symbols", "1", "--seq-len", "1"], "--num-symbols 1, --min-len 1, --max-len 1 give too few distinct"),
    (["--context-length", "100000"], "--context-length 100000 is more than 4096"),
    (["--max-len", "100000"], "--max-len 100000 needs a context of 200001 tokens"),
    (["--batch-size", "100000000"], "attention weights per layer, more than 268,435,456"),
    (["--batch-size", "1e8"], "invalid int value: '1e8'"),
    (["--layers", "100", "--d-model", "1024"], "make about 1.3e+09 parameters"),
    (["--eval-size", "10000000"], "--eval-size 10000000 is more than 100,000"),
])
def test_bad_options_are_refused_up_front_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_mod.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1] and len(err.splitlines()[-1]) < 240 and "Traceback" not in err


def test_an_out_that_is_a_file_or_cannot_be_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        train_mod.parse_args(["--out", str(tmp_path / "file")])
    assert "is a file, not a directory" in capsys.readouterr().err

    def makedirs(path, exist_ok=False):  # as for a directory without write permission (root may write anywhere)
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(train_mod.os, "makedirs", makedirs)
    assert train_mod.main([*SMALL, "--out", str(tmp_path / "locked")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: [Errno 13] Permission denied: ") and "nothing to resume" in err


def test_steps_below_the_default_warmup_shorten_it_and_say_so(capsys):
    args = train_mod.parse_args(["--steps", "30"])
    assert args.warmup == 15 and "note: warm-up 15 steps, half of --steps 30" in capsys.readouterr().err
    assert train_mod.parse_args(["--steps", "30", "--warmup", "30"]).warmup == 30  # given: kept
    assert train_mod.parse_args([]).warmup == train_mod.DEFAULT_WARMUP and capsys.readouterr().err == ""


@pytest.mark.parametrize("argv,out", [
    ([], "runs/copy"),
    (["--layers", "2", "--seed", "0"], "runs/copy"),  # the defaults, given
    (["--attention", "gqa"], "runs/copy-gqa"),
    (["--positions", "rope", "--layers", "4"], "runs/copy-layers4-rope"),
    (["--task", "reverse", "--lr", "1e-2", "--seed", "3"], "runs/reverse-lr0.01-seed3"),
    (["--out", "elsewhere", "--attention", "mqa"], "elsewhere"),
])
def test_the_run_directory_is_named_after_the_options(argv, out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_mod.parse_args(argv).out == out


def test_a_run_never_removes_a_run_of_other_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train_mod.main([*SMALL, "--steps", "10"])
    first = next(Path("runs").iterdir())
    before = (first / checkpoint.FILENAME).read_bytes()
    train_mod.main([*SMALL, "--steps", "10", "--attention", "gqa"])  # its own directory
    gqa = first.name.replace("-d-model", "-gqa-d-model")  # the words in --help's order
    assert sorted(p.name for p in Path("runs").iterdir()) == [first.name, gqa]
    with pytest.raises(SystemExit) as exit_info:  # into the first one, explicitly: refused
        train_mod.main([*SMALL, "--steps", "10", "--layers", "1", "--out", str(first)])
    assert exit_info.value.code == 2
    assert f"{first} holds a run of other options: --layers 2 (now 1)" in capsys.readouterr().err
    assert (first / checkpoint.FILENAME).read_bytes() == before


def test_resume_takes_the_stored_options_and_refuses_other_ones(trained, tmp_path, capsys):
    _, cut = trained
    args = train_mod.parse_args(["--resume", "--out", str(cut)])
    assert (args.num_symbols, args.d_model, args.steps, args.resume) == (6, 32, 100, True)
    assert train_mod.parse_args(["--resume", "--out", str(cut), "--d-model", "32"]).d_model == 32  # the same: fine
    with pytest.raises(SystemExit) as exit_info:
        train_mod.parse_args(["--resume", "--out", str(cut), "--lr", "0.5", "--steps", "200"])
    assert exit_info.value.code == 2
    assert (f"{cut} was trained with --lr 0.01 (now 0.5), --steps 100 (now 200); --resume continues it with the "
            "options stored there") in capsys.readouterr().err

    model_state, optimizer_state, meta = checkpoint.load(cut)
    checkpoint.save(tmp_path / checkpoint.FILENAME, model_state, optimizer_state,
                    dict(meta, options=dict(meta["options"], layers="2")))
    with pytest.raises(SystemExit):
        train_mod.parse_args(["--resume", "--out", str(tmp_path)])
    assert "the options stored in" in capsys.readouterr().err


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def screen_lines(text):
    """What a terminal shows, line by line: every \\n and \\r starts a line."""
    return re.split(r"[\r\n]", text)


def test_training_output_fits_80_columns_on_a_terminal_and_in_a_pipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "tinygrad_attn.train"])
    for stream, kind in ((FakeTerminal(), "tty"), (io.StringIO(), "pipe")):
        args = train_mod.parse_args([*SMALL, "--steps", "12", "--eval-every", "4", "--out", f"runs/{kind}"])
        train_mod.train(args, stream)
        long = [line for line in screen_lines(stream.getvalue()) if len(line) > 80]
        assert not long, long
    # the defaults' header, and status lines of a long run
    args = train_mod.parse_args(["--attention", "gqa", "--positions", "rope", "--steps", "99999"])
    evals = {"step": [99000], "exact_match": [0.995]}
    progress = train_mod.Progress(io.StringIO(), 99999, 0, 100)
    progress.start -= 1000  # 100 steps/s
    task = runs.make_task(vars(args))
    lines = [*train_mod.header(args, task, train_mod.make_model_config(args, task.vocab_size), range(200),
                               1_234_567).splitlines(),
             progress.status(99998, 12.3456, evals)]
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]


def test_progress_redraws_one_line_on_a_terminal_and_prints_at_a_rhythm_elsewhere():
    evals, seen = {"step": [], "exact_match": []}, {"step": [10], "exact_match": [0.5]}
    tty, pipe, quiet = FakeTerminal(), io.StringIO(), io.StringIO()
    for stream, interval in ((tty, 5.0), (pipe, 0.0), (quiet, 1e9)):
        progress = train_mod.Progress(stream, total=20, first_step=0, eval_every=10, interval=interval)
        progress.update(1, 2.5, evals)
        progress.update(11, 2.25, seen)
        progress.line("step 11/20 evaluated")
    assert tty.getvalue().startswith("\rstep 1/20  loss 2.5000  first held-out check at 10  ")
    assert "\rstep 11/20  loss 2.2500  held-out 50.0% at 10  " in tty.getvalue()
    assert " ETA 0:0" in tty.getvalue() and tty.getvalue().endswith("\rstep 11/20 evaluated\n")
    assert pipe.getvalue().count("\n") == 3 and "\r" not in pipe.getvalue()  # interval 0: every update
    assert quiet.getvalue() == "step 11/20 evaluated\n"


def test_help_gives_every_option_a_help_and_each_default_once():
    parser = train_mod.build_parser()
    assert all(action.help for action in parser._actions)
    text = parser.format_help()
    blocks = re.split(r"\n  (?=-)", text)  # one block per option
    assert all(block.count("default") <= 1 for block in blocks), [b for b in blocks if b.count("default") > 1]
    assert "(default: None)" not in text and "--batch-size" in text and "(default: 0)" in text


def test_hints_are_spelled_as_the_user_runs_the_commands(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", [".venv/bin/python", "-m", "tinygrad_attn.train"])
    monkeypatch.delenv("TINYGRAD_ATTN_MAKE", raising=False)
    assert runs.command("train", ["--resume", "--out", "runs/copy"]) == \
        ".venv/bin/python -m tinygrad_attn.train --resume --out runs/copy"
    monkeypatch.setenv("TINYGRAD_ATTN_MAKE", "1")
    assert runs.command("train", ["--resume", "--out", "runs/copy"]) == 'make train ARGS="--resume --out runs/copy"'
    assert runs.command("sample", ["--checkpoint", "runs/copy", "3 1 4"]) == \
        "make sample ARGS=\"--checkpoint runs/copy '3 1 4'\""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^RUN := TINYGRAD_ATTN_MAKE=1 .*\$\(PY\) -m$", makefile, re.M)
    for tool in ("train", "sample", "pictures"):
        assert f"$(RUN) tinygrad_attn.{tool} $(ARGS)" in makefile
        assert re.search(rf"^{tool}: .*## ", makefile, re.M)  # listed by make help


def heldout_and_training_examples():
    task = CopyTask(num_symbols=6, min_len=4)
    heldout = task.heldout_set(np.random.default_rng(0), 1)[0]
    training = task.sample(np.random.default_rng(0), 1)[0]
    return " ".join(map(str, heldout)), " ".join(map(str, training))


def test_sample_says_what_the_checkpoint_is_and_labels_each_sequence(trained, capsys):
    done, cut = trained
    heldout, training = heldout_and_training_examples()
    assert sample_cli.main(["--checkpoint", str(done), heldout, training, "1 2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.match(rf"{re.escape(str(done))}: a finished run, step \d+, held-out exact match 100.0% at step \d+$",
                    lines[0])
    assert lines[1] == f"{heldout} -> {heldout}  ✓  (held out: never trained on)"
    assert lines[2] == f"{training} -> {training}  ✓  (training split)"
    assert lines[3].startswith("1 2 -> ") and lines[3].endswith("(length 2: outside the trained lengths 4..4)")

    sample_cli.main(["--checkpoint", str(cut), heldout])
    out = capsys.readouterr().out
    assert out.startswith(f"{cut}: step 10 of 100, held-out exact match ")
    assert "the run stopped before it finished" in out
    assert f"-m tinygrad_attn.train --resume --out {cut}" in out


@pytest.mark.parametrize("bad,message", [("1 2 9 3", "symbol 9 is outside the vocabulary: symbols are 0..5"),
                                         ("99999999999999999999", "symbol 99999999999999999999 is outside"),
                                         ("1 2 3 4 5", "5 symbols need a context of 11 tokens"),
                                         ("1 x", "symbols must be integers")])
def test_sample_refuses_bad_sequences_in_one_line(trained, bad, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sample_cli.main(["--checkpoint", str(trained[0]), bad])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_pictures_title_an_example_as_sample_labels_it(trained, tmp_path, capsys):
    done, _ = trained
    (tmp_path / checkpoint.FILENAME).write_bytes((done / checkpoint.FILENAME).read_bytes())
    heldout, training = heldout_and_training_examples()
    for example, label in [(heldout, "held out: never trained on"), (training, "training split"),
                           ("1 2", "length 2: outside the trained lengths 4..4"), (None, "held out: never trained on")]:
        assert pictures_cli.main(["--checkpoint", str(tmp_path)] + (["--example", example] if example else [])) == 0
        out = capsys.readouterr().out
        assert "a finished run" in out.splitlines()[0] and f"wrote {tmp_path / 'curves.svg'}" in out
        assert f"({label}): rows = queries" in (tmp_path / "attention.svg").read_text()


def test_bad_checkpoints_are_one_line_errors_in_sample_and_pictures(tmp_path, capsys):
    np.save(tmp_path / "array.npy", np.zeros(3))
    os.replace(tmp_path / "array.npy", tmp_path / checkpoint.FILENAME)  # a .npy named checkpoint.npz
    for cli in (sample_cli.main, pictures_cli.main):
        with pytest.raises(SystemExit) as exit_info:
            cli(["--checkpoint", str(tmp_path), *(["1 2 3"] if cli is sample_cli.main else [])])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "is not a readable checkpoint" in err and "Traceback" not in err


def test_a_run_that_does_not_exist_lists_the_runs_there_are_and_how_to_train_one(trained, monkeypatch, capsys):
    done, _ = trained
    monkeypatch.setenv("TINYGRAD_ATTN_MAKE", "1")
    for missing, train in ((done.parent / "text", 'make train ARGS="--task text"'), (done.parent / "copy-gqa", "make train;")):
        with pytest.raises(SystemExit) as exit_info:
            sample_cli.main(["--checkpoint", str(missing), "--prompt", "x"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"no checkpoint at {missing}" in err
        assert f"the runs there are: {done.parent / 'cut'}, {done}" in err and f"train one first: {train}" in err


def test_the_commands_as_programs():
    cmd = [sys.executable, "-m", "tinygrad_attn.train"]
    bad = subprocess.run([*cmd, "--d-model", "30"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not divisible by --heads 4" in bad.stderr and "Traceback" not in bad.stderr
    help_text = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--kv-heads" in help_text.stdout and "--resume" in help_text.stdout
