"""benchmarks/train_seeds.py, the check that the default recipe learns for every seed, runs (on a toy
recipe: the real one takes minutes), and the README's table of its results is for today's defaults."""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed: bare `pytest` needs this
from benchmarks import train_seeds  # noqa: E402
from tinygrad_attn import train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_trains_every_seed_and_fails_when_one_does_not_learn(capsys):
    toy = ["--num-symbols", "6", "--seq-len", "4", "--d-model", "32", "--batch-size", "32", "--lr", "1e-2",
           "--warmup", "10", "--eval-every", "10", "--eval-size", "64"]
    assert train_seeds.main(["--seeds", "0", "1", "--", *toy, "--steps", "100"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 seeds reached 100% held-out" in out and re.search(r"^   1  +\d+ +100.0%", out, re.M)
    assert train_seeds.main(["--seeds", "0", "--", *toy, "--steps", "2", "--warmup", "1"]) == 1  # too short to learn
    assert "0 of 1 seeds reached 100% held-out; not seeds 0" in capsys.readouterr().out


def test_the_readme_table_is_for_the_current_default_recipe():
    text = (ROOT / "README.md").read_text()
    recipe = re.search(r"The default recipe \(batch (\d+), peak lr ([\d.]+), at most (\d+) steps, "
                       r"evaluated every (\d+)\)", text)
    defaults = train.parse_args([])
    assert recipe and recipe.groups() == (str(defaults.batch_size), f"{defaults.lr:g}", str(defaults.steps),
                                          str(defaults.eval_every)), "rerun python -m benchmarks.train_seeds"
    seeds = re.search(r"^\| seed \|(.*)\|\n\|[-|]+\n\| steps to 100% held-out \|(.*)\|$", text, re.M)
    assert [int(s) for s in seeds[1].split("|")] == list(range(10))
    assert all(int(s) <= defaults.steps for s in seeds[2].split("|"))
