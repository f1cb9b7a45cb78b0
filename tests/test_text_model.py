"""The text task end to end: training and resuming a small language model on Python's docs,
sampling from it, the same loss curve as PyTorch, and the errors of the text commands."""

import io
import json
import math

import numpy as np
import pytest

from tinygrad_attn import checkpoint, manual_seed
from tinygrad_attn import pictures as pictures_cli
from tinygrad_attn import sample as sample_cli
from tinygrad_attn import train as train_mod
from tinygrad_attn.nn import functional as F
from tinygrad_attn.optim import AdamW, clip_grad_norm_, warmup_cosine
from tinygrad_attn.runs import load_run
from tinygrad_attn.tensor import Tensor
from tinygrad_attn.text import TextTask, load_corpus, split_corpus, train_tokenizer

from attention_testing import torch_gpt_twin

# A model small enough for a few seconds of training: one layer, 16 characters of context.
TINY = ["--task", "text", "--layers", "1", "--d-model", "16", "--heads", "2", "--context-length", "16",
        "--batch-size", "8", "--lr", "3e-3", "--warmup", "4", "--eval-every", "10"]


def run(argv, out):
    stream = io.StringIO()
    result = train_mod.train(train_mod.parse_args([*argv, "--out", str(out)]), stream)
    return result, stream.getvalue()


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("text")
    result, printed = run([*TINY, "--steps", "30"], out)
    return out, result, printed


def test_a_text_run_reports_held_out_nats_per_char_beside_the_baselines(text_run):
    out, result, printed = text_run
    assert result["step"] == 30  # a text run does not stop early
    history = json.loads((out / "history.json").read_text())
    assert history["eval"]["step"] == [10, 20, 30]
    held = history["eval"]["nats_per_char"]
    assert held[-1] < held[0] < math.log(100)  # it learns (uniform over ~100 characters: 4.6 nats)
    assert history["eval"]["loss"] == held  # characters are tokens
    assert "held-out baselines: unigram 3.280, bigram 2.568 nats/char" in printed
    assert "a sample (temperature 0.8)" in printed and "try it:" in printed and "--prompt" in printed
    assert all(len(line) <= 80 for line in printed.splitlines()  # but the sample, and the paths of the run
               if not line.startswith(("[", "try it")) and str(out) not in line)
    meta = checkpoint.read_meta(out)
    assert meta["tokenizer"]["kind"] == "char" and len(meta["tokenizer"]["chars"]) == 103


def test_a_text_run_resumes_to_the_same_history(text_run, tmp_path, monkeypatch):
    out, _, _ = text_run
    real_step, calls = train_mod.train_step, []

    def interrupt_at_step_15(*args):
        calls.append(1)
        if len(calls) == 15:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(train_mod, "train_step", interrupt_at_step_15)
    with pytest.raises(KeyboardInterrupt):
        run([*TINY, "--steps", "30"], tmp_path)
    monkeypatch.setattr(train_mod, "train_step", real_step)
    manual_seed(99)  # whatever the generator holds, --resume restores it
    resumed, printed = run(["--resume"], tmp_path)
    assert "resuming" in printed and resumed["step"] == 30
    assert json.loads((tmp_path / "history.json").read_text()) == json.loads((out / "history.json").read_text())


def test_a_run_decodes_with_its_stored_tokenizer(text_run):
    out, _, _ = text_run
    model, task, _ = load_run(out)
    assert isinstance(task, TextTask) and task.vocab_size == model.cfg.vocab_size == 103
    assert task.tokenizer.decode(task.tokenizer.encode("for x in y:")) == "for x in y:"


def test_sample_streams_text_repeatably_under_a_seed(text_run, capsys):
    out, _, _ = text_run
    argv = ["--checkpoint", str(out), "--prompt", "The for loop", "--max-new-tokens", "40"]
    outputs = []
    for seed in ("3", "3", "4"):
        assert sample_cli.main([*argv, "--seed", seed]) == 0
        outputs.append(capsys.readouterr().out.splitlines(keepends=True))
    assert outputs[0] == outputs[1] != outputs[2]
    text = "".join(outputs[0][1:]).rstrip("\n")  # the first line says which checkpoint this is
    assert text.startswith("The for loop") and len(text) == len("The for loop") + 40
    greedy = [sample_cli.main([*argv, "--temperature", "0", "--seed", s]) or capsys.readouterr().out for s in "12"]
    assert greedy[0] == greedy[1]  # temperature 0 draws nothing: the seed does not matter
    assert sample_cli.main([*argv, "--top-k", "1"]) == 0 and capsys.readouterr().out == greedy[0]
    # longer than the context (16): the cache gives way to the book's sliding window
    assert sample_cli.main([*argv[:-1], "60"]) == 0
    assert len("".join(capsys.readouterr().out.splitlines(keepends=True)[1:]).rstrip("\n")) == 12 + 60


@pytest.mark.parametrize("extra, message", [
    (["--prompt", "snow: ☃"], "the prompt cannot be encoded: 1 character is not in the vocabulary"),
    (["--prompt", ""], "the prompt is 0 tokens; it must be 1 to 16"),
    (["--prompt", "x" * 17], "the prompt is 17 tokens; it must be 1 to 16"),
    (["1 2 3"], 'a text run takes --prompt "some text", not symbols'),
    (["--prompt", "x", "--top-p", "0"], r"top_p must be a number in (0, 1], got 0.0"),
    (["--prompt", "x", "--temperature", "nan"], "temperature must be a finite number >= 0"),
])
def test_sample_errors_on_a_text_run_are_one_line(text_run, capsys, extra, message):
    out, _, _ = text_run
    with pytest.raises(SystemExit) as exit_info:
        sample_cli.main(["--checkpoint", str(out), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1]


def test_pictures_draw_a_text_run(text_run, capsys):
    out, _, _ = text_run
    assert pictures_cli.main(["--checkpoint", str(out), "--example", "def f(x):"]) == 0
    heatmap = (out / "attention.svg").read_text()
    assert "your text" in heatmap and ">␣<" in heatmap  # the space made visible
    assert "held-out nats per char" in (out / "curves.svg").read_text()


def test_the_text_options_are_checked(capsys):
    for argv, message in [(["--task", "text", "--tokenizer", "bpe", "--vocab-size", "200"],
                           "--vocab-size 200 must be above 256 (the bytes) and at most 65536"),
                          (["--task", "text", "--tokenizer", "word"], "invalid choice: 'word'")]:
        with pytest.raises(SystemExit):
            train_mod.parse_args(argv)
        assert message in capsys.readouterr().err


def test_the_text_defaults_name_the_run_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = train_mod.parse_args(["--task", "text"])
    assert (args.out, args.layers, args.d_model, args.context_length) == ("runs/text", 4, 128, 128)
    assert train_mod.parse_args(["--task", "text", "--tokenizer", "bpe"]).out == "runs/text-tokenizerbpe"


def test_the_loss_curve_of_the_first_50_steps_is_pytorchs(torch):
    """The same model, weights, batches, AdamW, schedule and clipping in PyTorch: the same losses."""
    train_text, heldout_text = split_corpus(load_corpus())
    task = TextTask(train_tokenizer("char", train_text, heldout_text), context_length=16)
    args = train_mod.parse_args([*TINY, "--steps", "50", "--clip", "0.5"])
    manual_seed(0)
    ours = train_mod.Transformer(train_mod.make_model_config(args, task.vocab_size))
    theirs = torch_gpt_twin(torch, ours.cfg).float()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()}, strict=True)
    opt = AdamW(ours.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    topt = torch.optim.AdamW(theirs.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    rng, losses = np.random.default_rng(0), []
    for step in range(args.steps):
        idx, targets, _ = task.get_batch(rng, args.batch_size)
        opt.lr = warmup_cosine(step, args.lr, args.warmup, args.steps)
        for group in topt.param_groups:
            group["lr"] = opt.lr
        logits = ours(Tensor(idx))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(opt.params, args.clip)
        opt.step()
        tlogits = theirs(torch.tensor(idx))
        tloss = torch.nn.functional.cross_entropy(tlogits.reshape(-1, tlogits.shape[-1]), torch.tensor(targets).reshape(-1))
        topt.zero_grad()
        tloss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), args.clip)
        topt.step()
        losses.append((loss.item(), tloss.item()))
    ours_curve, theirs_curve = np.array(losses).T
    assert ours_curve[-1] < ours_curve[0] - 0.5  # it learned: the comparison is not of a flat line
    np.testing.assert_allclose(ours_curve, theirs_curve, rtol=1e-4)
