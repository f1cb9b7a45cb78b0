"""The benchmark runs end to end at toy size, so it cannot rot; no timing is asserted."""

import sys
from pathlib import Path

import numpy as np
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
    assert _rows(results, "train") == configs and _rows(results, "memory") == configs
    others = [n for n in bench.fairness_names(bench.configs("tiny")[0], results["with_torch"])]
    assert [(f["config"], f["side"]) for f in results["fairness"]] == [(c, n) for c in configs for n in others]
    assert results["fair"] and all(f["ok"] for f in results["fairness"])
    for row in results["train"]:
        assert all(row[n] > 0 for n in bench.side_names(results["with_torch"]))
        assert row["flops"] == bench.step_flops(bench.configs("tiny")[0]) or row["attention"] == "gqa"
        assert all(0 <= kept <= timed for kept, timed in row["kept"].values())  # a busy machine may leave out all
    for row in results["memory"]:
        assert all(row[n]["peak_mib"] >= row[n]["baseline_mib"] > 0 for n in bench.side_names(results["with_torch"]))
    assert [m["steps"] for m in results["growth"]["marks"]] == list(bench.MODES["tiny"]["growth"])
    gen = results["generation"]
    assert [row["context"] for row in gen] == list(bench.MODES["tiny"]["gen_contexts"])
    assert all(row["same_tokens"] for row in gen), "greedy decoding must give the same tokens on every side"
    for heading in ("## Training step", "### 1 thread: sgemm peak", "### Fairness check", "## Peak memory",
                    "## Memory growth", "## Generation", "--tiny"):
        assert heading in report
    assert "**NO**" not in report


def test_tiny_run_with_torch_has_the_torch_columns(tiny, torch):
    results, report = tiny
    assert results["with_torch"]
    assert {f["side"] for f in results["fairness"]} == {"torch", "numpy"}
    assert "ours / PyTorch" in report and torch.__version__ in report
    assert all(row["decode_tps_torch_cache"] > 0 for row in results["generation"])


def test_without_torch_only_our_figures_and_numpy(tmp_path):
    out = tmp_path / "performance.md"
    results = bench.main(["--tiny", "--no-torch", "--out", str(out)])
    assert not results["with_torch"] and results["fair"]
    assert {f["side"] for f in results["fairness"]} == {"numpy"}
    assert all("torch" not in row for row in results["train"])
    assert "PyTorch | left out (--no-torch)" in out.read_text()


def test_only_the_full_run_writes_the_tracked_report(monkeypatch, tmp_path):
    written = tmp_path / "performance.md"
    monkeypatch.setattr(bench, "DEFAULT_OUT", str(written))
    bench.main(["--tiny", "--no-torch"])
    assert not written.exists()  # --tiny and --quick print; only the full mode (or --out) writes


def test_the_flop_count_of_a_step():
    cfg = dict(bench.MODEL, d_model=64, copy_len=16, attention="mha", num_kv_heads=None, batch=64)
    n, T, d = 64 * 32, 32, 64
    per_layer = 2 * n * (4 * d * d + 8 * d * d) + 2 * 2 * 64 * T * T * d  # projections, feed-forward, attention
    assert bench.step_flops(cfg) == 3 * (2 * per_layer + 2 * n * d * 12)  # + out_head; backward twice the forward
    gqa = dict(cfg, attention="gqa", num_kv_heads=2)
    halved = 2 * n * d * (d // 2)  # W_key and W_value each lose half their outputs, in each of the 2 layers
    assert bench.step_flops(cfg) - bench.step_flops(gqa) == 3 * 2 * 2 * halved


def test_a_disturbed_turn_is_left_out(monkeypatch):
    """Other processes' CPU time during a turn (busy time minus ours) marks it disturbed."""
    clock = iter(np.arange(0.0, 1000.0, 1.0))
    monkeypatch.setattr(bench, "busy_seconds", lambda: next(clock) * 10)  # 10 busy seconds a call: always disturbed
    medians, kept = bench.interleaved({"a": lambda: None}, steps=3, turn=0.0, pause=0.0)
    assert kept == {"a": (0, 3)} and medians["a"] >= 0  # all left out; the median falls back on every step


def test_fairness_check_catches_a_different_model():
    """A numpy model with one weight changed must fail the check that guards the race."""
    cfg = bench.configs("tiny")[0]
    state = bench.initial_state(cfg)
    other = dict(state, **{"trf_blocks.1.att.W_value.weight": state["trf_blocks.1.att.W_value.weight"] * 1.01})
    sides = {"ours": bench.make_side("ours", cfg, state), "numpy": bench.make_side("numpy", cfg, other)}
    [row] = bench.check_fairness(cfg, sides, bench.batches(cfg, 2))
    assert not row["ok"] and row["grad_err"] > bench.GRAD_TOL
    assert row["worst_param"].startswith("trf_blocks.")
