"""The benchmark runs end to end at toy size, so it cannot rot; no timing is asserted."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed: bare `pytest` needs this
from benchmarks import bench  # noqa: E402


def _rows(results, kind):
    return [row["config"] for row in results[kind]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One run of `python -m benchmarks.bench --tiny`, with PyTorch where it is installed."""
    out = tmp_path_factory.mktemp("bench") / "performance.md"
    return bench.main(["--tiny", "--out", str(out)]), out.read_text()


def test_tiny_run_has_every_row_and_passes_the_fairness_check(tiny):
    results, report = tiny
    configs = [bench.label(cfg) for cfg in bench.configs("tiny")]
    assert [cfg["attention"] for cfg in bench.configs("tiny")] == ["mha", "gqa"]
    for kind in ("train", "attention", "memory"):
        assert _rows(results, kind) == configs, kind
    others = [n for n in bench.side_names(results["with_torch"]) if n != "ours"]
    assert [(f["config"], f["side"]) for f in results["fairness"]] == [(c, n) for c in configs for n in others]
    assert results["fair"] and all(f["ok"] for f in results["fairness"])
    for row in results["train"]:
        assert all(row[n] > 0 for n in bench.side_names(results["with_torch"]))
    for row in results["memory"]:
        assert all(row[n]["peak_mib"] >= row[n]["baseline_mib"] > 0 for n in bench.memory_names(results["with_torch"]))
    assert [m["steps"] for m in results["growth"]["marks"]] == list(bench.MODES["tiny"]["growth"])
    gen = results["generation"]
    assert [row["context"] for row in gen] == list(bench.MODES["tiny"]["gen_contexts"])
    assert all(row["same_tokens"] for row in gen), "greedy decoding must give the same tokens with or without the cache"
    for heading in ("## Training step", "### Fairness check", "## One attention layer", "## Peak memory",
                    "## Memory growth", "## Generation", "--tiny"):
        assert heading in report
    assert "**NO**" not in report


def test_tiny_run_with_torch_has_the_torch_columns(tiny, torch):
    results, report = tiny
    assert results["with_torch"]
    assert {f["side"] for f in results["fairness"]} == {"torch", "torch sdpa", "numpy"}
    assert "ours / PyTorch" in report and torch.__version__ in report


def test_without_torch_only_our_figures_and_numpy(tmp_path):
    out = tmp_path / "performance.md"
    results = bench.main(["--tiny", "--no-torch", "--out", str(out)])
    assert not results["with_torch"] and results["fair"]
    assert {f["side"] for f in results["fairness"]} == {"numpy"}
    assert all("torch" not in row for row in results["train"])
    assert "PyTorch | left out (--no-torch)" in out.read_text()


def test_fairness_check_catches_a_different_model():
    """A numpy model with one weight changed must fail the check that guards the race."""
    cfg = bench.configs("tiny")[0]
    state = bench.initial_state(cfg)
    other = dict(state, **{"trf_blocks.1.att.W_value.weight": state["trf_blocks.1.att.W_value.weight"] * 1.01})
    sides = {"ours": bench.make_side("ours", cfg, state), "numpy": bench.make_side("numpy", cfg, other)}
    [row] = bench.check_fairness(cfg, sides, bench.batches(cfg, 2))
    assert not row["ok"] and row["grad_err"] > bench.GRAD_TOL
    assert row["worst_param"].startswith("trf_blocks.")
