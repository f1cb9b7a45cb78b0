"""How fast and how lean is a training step of tinygrad_attn, next to PyTorch, and how near the machine's limit?

The copy-task model (a 2-layer pre-LayerNorm decoder, 4 heads, Adam, batch 64) is trained by
two implementations of one architecture, started from the same weights:

    ours         tinygrad_attn's Transformer, Adam and cross_entropy (autograd on numpy)
    torch        torch_twin.py: PyTorch eager with the same hand-written attention

on a grid of sizes, d_model {64, 128, 256} x T {32, 128, 512} tokens, multi-head and grouped-query
attention, at 1 and at 2 threads (PyTorch's torch.set_num_threads, our runtime.set_num_threads).
First the two must agree on the loss, every gradient and a few Adam steps (float32 tolerance;
the hand-written numpy model of numpy_reference.py too, on the smaller cells). Then their steps
are timed in this one process, interleaved (turns of a few steps, the order rotating, see
`interleaved`), and the medians compared. A turn during which other processes used the CPU
(/proc/stat's busy time minus ours) is left out, and the report says how many were.

Next to each time, the step's matmul FLOPs (`step_flops`) over it, and the machine's sgemm peak
(a 2048^3 float32 product in numpy's OpenBLAS at that many threads). Peak memory is read in a
fresh process per side (VmHWM), growth as our RSS after N1 and N2 steps; greedy decoding is
timed token by token with and without the KV cache, and PyTorch's with its own cache written in place.

    python -m benchmarks.bench              the full run (make bench): writes docs/performance.md
    python -m benchmarks.bench --quick      fewer steps, the same tables, printed only
    python -m benchmarks.bench --tiny       toy sizes, seconds (what tests/test_bench.py runs)
    python -m benchmarks.bench --profile    also print a cProfile of our training step
    python -m benchmarks.bench --no-torch   as if PyTorch were not installed
    python -m benchmarks.bench --threads 1  one thread count only
"""

import argparse
import concurrent.futures
import contextlib
import cProfile
import datetime
import gc
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

import tinygrad_attn
from tinygrad_attn import Tensor, runtime
from tinygrad_attn.data import CopyTask, IGNORE_INDEX
from tinygrad_attn.nn import functional as F
from tinygrad_attn.nn.transformer import Transformer, TransformerConfig
from tinygrad_attn.optim import Adam

from . import numpy_reference
from .autograd_side import AutogradSide

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "docs", "performance.md")

LR = 1e-3
LOSS_TOL = 1e-5  # |loss - loss_ours| / loss_ours
GRAD_TOL = 1e-4  # max |g - g_ours| / max |g_ours|, per parameter
STEP_TOL = 1e-4  # the same for the loss after each of the first Adam steps
ADAM_CHECK_STEPS = 3
NUMPY_MAX_TOKENS = 64 * 128  # the numpy model joins the fairness check up to this batch * T

# The model of the issue: 10 symbols, 2 layers, 4 heads; gqa shares each key/value head by 2 query heads.
MODEL = dict(num_symbols=10, num_layers=2, num_heads=4)
ATTENTIONS = (("mha", None), ("gqa", 2))
GRID = dict(d_model=(64, 128, 256), tokens=(32, 128, 512))
MODES = {  # each side times about `budget` seconds of steps per cell and thread count, within [min, max] steps
    "full": dict(d_model=GRID["d_model"], tokens=GRID["tokens"], batch=64, budget=3.0, min_steps=5, max_steps=40,
                 turn=0.3, pause=0.15, peak_size=2048, mem_cells=((64, 32), (128, 128), (256, 512)), mem_steps=3,
                 growth=(100, 1000), gen_d_model=64, gen_contexts=(64, 256, 1024), gen_new=16, gen_reps=3,
                 profile_steps=5),
    "quick": dict(d_model=GRID["d_model"], tokens=GRID["tokens"], batch=64, budget=0.8, min_steps=2, max_steps=12,
                  turn=0.2, pause=0.15, peak_size=2048, mem_cells=((64, 32), (128, 128)), mem_steps=2,
                  growth=(30, 150),
                  gen_d_model=64, gen_contexts=(64, 256, 1024), gen_new=8, gen_reps=2, profile_steps=4),
    "tiny": dict(d_model=(16,), tokens=(8,), batch=4, budget=0.01, min_steps=2, max_steps=2, turn=0.0, pause=0.0,
                 peak_size=256, mem_cells=((16, 8),), mem_steps=2, growth=(3, 10), gen_d_model=16, gen_contexts=(8, 16, 32),
                 gen_new=4, gen_reps=1, profile_steps=2),
}
# The targets of issue 16, shown beside the measurements.
TARGET_RATIO = {1: 0.9, 2: 1.0}  # ours / PyTorch at most this, by threads
TARGET_PEAK_SHARE = 0.5  # at d_model 256, the step's FLOP/s at least this share of the sgemm peak
TARGET_MEMORY = 0.5  # ours / PyTorch's peak memory at most this
TARGET_CACHE_SPEEDUP = 20.0  # decoding with the cache at context 1024 at least this much faster than recomputing
DISTURBED = 0.1  # a turn is left out when other processes used more than this share of a core during it


# ---------------------------------------------------------------------------------------
# The configurations and the training side of each implementation
# ---------------------------------------------------------------------------------------

def configs(mode):
    """One dict per cell of the grid (d_model, T tokens, attention), in table order."""
    m = MODES[mode]
    return [dict(MODEL, d_model=d, copy_len=T // 2, attention=att, num_kv_heads=kv, batch=m["batch"])
            for d in m["d_model"] for T in m["tokens"] for att, kv in ATTENTIONS]


def label(cfg):
    return f"d_model {cfg['d_model']}, T {2 * cfg['copy_len']}, {cfg['attention']}"


def task_of(cfg):
    return CopyTask(num_symbols=cfg["num_symbols"], min_len=cfg["copy_len"])


def model_config(cfg):
    task = task_of(cfg)
    return TransformerConfig(vocab_size=task.vocab_size, context_length=task.context_length, d_model=cfg["d_model"],
                             num_layers=cfg["num_layers"], num_heads=cfg["num_heads"],
                             num_kv_heads=cfg["num_kv_heads"])


def step_flops(cfg):
    """Matmul FLOPs of one training step: 2 m n k per product forward, twice that backward.

    Counted: per layer the W_query, W_key, W_value, out_proj and the two feed-forward products, and
    the two attention products (scores and weighted values) over the full T x T (neither side skips
    the masked half), and out_head. Not counted: elementwise work, reductions, the optimizer.
    """
    mc = model_config(cfg)
    n, T, d = cfg["batch"] * 2 * cfg["copy_len"], 2 * cfg["copy_len"], mc.d_model
    d_kv = mc.num_kv_heads * (d // mc.num_heads)
    per_layer = 2 * n * d * (d + 2 * d_kv + d + 2 * 4 * d) + 2 * 2 * cfg["batch"] * T * T * d
    return 3 * (mc.num_layers * per_layer + 2 * n * d * mc.vocab_size)


def initial_state(cfg, seed=0):
    """The weights every side starts from: our model's init, as {name: float32 array}."""
    tinygrad_attn.manual_seed(seed)
    return Transformer(model_config(cfg)).state_dict()


def batches(cfg, n, seed=1):
    """n copy-task batches (idx, targets) of shape (batch, 2 * copy_len), int64 numpy arrays."""
    rng, task = np.random.default_rng(seed), task_of(cfg)
    return [task.get_batch(rng, cfg["batch"])[:2] for _ in range(n)]


class Ours(AutogradSide):
    """tinygrad_attn: model(idx) -> logits, cross_entropy, backward(), Adam."""

    def __init__(self, model_cfg, state, lr):
        self.model = Transformer(model_cfg)
        self.model.load_state_dict(state)
        self.named = dict(self.model.named_parameters())
        self.opt = Adam(self.model.parameters(), lr=lr)

    def prepare(self, idx, targets):
        return Tensor(idx), targets

    def _loss(self, idx, targets):
        logits = self.model(idx)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


@contextlib.contextmanager
def threads(n, with_torch):
    """n threads for both sides inside the block (ours: runtime.set_num_threads, which keeps numpy's
    BLAS at one; PyTorch: torch.set_num_threads), the counts before after it."""
    with runtime.num_threads(n):
        if not with_torch:
            yield
            return
        import torch
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def make_side(name, cfg, state):
    """The runner `name` ("ours", "torch" or "numpy") of configuration cfg, from weights state."""
    if name == "ours":
        return Ours(model_config(cfg), state, LR)
    if name == "numpy":
        return numpy_reference.NumpySide(model_config(cfg), state, LR)
    from . import torch_twin  # imported only here: the ours and numpy processes never load torch
    return torch_twin.TorchSide(model_config(cfg), state, LR)


def side_names(with_torch):
    """The sides of the race."""
    return ["ours", "torch"] if with_torch else ["ours"]


def fairness_names(cfg, with_torch):
    """The sides checked against ours: PyTorch, and the numpy model on the cells it is quick at."""
    numpy_too = cfg["batch"] * 2 * cfg["copy_len"] <= NUMPY_MAX_TOKENS
    return side_names(with_torch)[1:] + (["numpy"] if numpy_too or not with_torch else [])


# ---------------------------------------------------------------------------------------
# Fairness, then the race
# ---------------------------------------------------------------------------------------

def max_rel_err(a, b):
    """max |a - b| / max |b|: the error on the scale of the reference tensor b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def check_fairness(cfg, sides, batch_list):
    """Loss, gradients and a few Adam steps of every side against ours; one row per other side."""
    prepared = {n: [s.prepare(*b) for b in batch_list] for n, s in sides.items()}
    ref_loss, ref_grads = sides["ours"].loss_and_grads(prepared["ours"][0])
    ref_grads = {k: v.copy() for k, v in ref_grads.items()}
    rows = []
    for n, s in sides.items():
        if n == "ours":
            continue
        loss, grads = s.loss_and_grads(prepared[n][0])
        if set(grads) != set(ref_grads):
            raise RuntimeError(f"{n}: parameter names differ from ours: missing {sorted(set(ref_grads) - set(grads))}, "
                               f"extra {sorted(set(grads) - set(ref_grads))}")
        grad_errs = {k: max_rel_err(grads[k], ref_grads[k]) for k in ref_grads}
        worst = max(grad_errs, key=grad_errs.get)
        rows.append(dict(config=label(cfg), side=n, loss_ours=ref_loss, loss=loss,
                         loss_err=abs(loss - ref_loss) / abs(ref_loss), grad_err=grad_errs[worst], worst_param=worst))
    # Then the same Adam steps on every side from the same weights: the optimizers must agree too.
    step_losses = {n: [s.step(prepared[n][i % len(batch_list)]) for i in range(ADAM_CHECK_STEPS + 1)]
                   for n, s in sides.items()}
    for row in rows:
        ours, theirs = step_losses["ours"][1:], step_losses[row["side"]][1:]  # losses after 1, 2, ... updates
        row["adam_err"] = max(abs(a - b) / abs(b) for a, b in zip(theirs, ours))
        row["ok"] = row["loss_err"] < LOSS_TOL and row["grad_err"] < GRAD_TOL and row["adam_err"] < STEP_TOL
    return rows


def busy_seconds():
    """CPU seconds every process of the machine has used since boot (/proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def interleaved(calls, steps, turn, pause):
    """Median seconds of each of `calls` {name: fn()}, timed in turns in this one process.

    Each side gets `steps` timed calls in turns of about `turn` seconds, the order rotating from
    turn to turn so that a slow drift of the machine is shared. Before each turn the process
    idles `pause` seconds and makes one untimed call (if calls are short): worker threads spin a
    while after their last job (OpenMP's, in PyTorch), and the spinning threads of the side
    before would steal the cores of this side's. A turn during which other processes used more
    than DISTURBED of a core (the machine's busy CPU time minus this process's) is left out.
    Returns ({name: median}, {name: (steps kept, steps timed)}).
    """
    names = list(calls)
    first = {n: _timed(calls[n]) for n in names}  # a warm-up call, and how long one takes
    block = {n: max(1, min(steps, round(turn / max(first[n], 1e-9)))) for n in names}
    times, kept = {n: [] for n in names}, {n: [] for n in names}
    r = 0
    while any(len(times[n]) < steps for n in names):
        for n in names[r % len(names):] + names[:r % len(names)]:
            if len(times[n]) >= steps:
                continue
            time.sleep(pause)
            if first[n] < 0.5:
                calls[n]()  # wakes this side's threads
            busy, cpu, wall = busy_seconds(), time.process_time(), time.perf_counter()
            turn_times = [_timed(calls[n]) for _ in range(min(block[n], steps - len(times[n])))]
            wall = time.perf_counter() - wall
            others = None if busy is None else busy_seconds() - busy - (time.process_time() - cpu)
            times[n] += turn_times
            if others is None or others <= DISTURBED * wall:
                kept[n] += turn_times
        r += 1
    medians = {n: float(np.median(kept[n] or times[n])) for n in names}
    return medians, {n: (len(kept[n]), len(times[n])) for n in names}


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def race(sides, prepared, m):
    """(median seconds per training step of each side, {side: (steps kept, steps timed)})."""
    first = {n: _timed(lambda s=s, d=prepared[n]: s.step(d[0])) for n, s in sides.items()}  # warm-up
    steps = int(min(m["max_steps"], max(m["min_steps"], m["budget"] / max(max(first.values()), 1e-9))))
    calls = {n: (lambda s=s, data=prepared[n], i=iter(range(10 ** 9)): s.step(data[next(i) % len(data)]))
             for n, s in sides.items()}
    return interleaved(calls, steps, m["turn"], m["pause"])


def sgemm_peak(n_threads, size=2048, reps=5):
    """FLOP/s of the best of `reps` float32 (size x size) @ (size x size) products, numpy's OpenBLAS
    at n_threads threads (set for the measurement, then back to one, as runtime keeps it)."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    runtime.set_blas_threads(n_threads)
    try:
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(reps))
    finally:
        runtime.set_blas_threads(1)
    return 2 * size ** 3 / best


# ---------------------------------------------------------------------------------------
# Memory: each side in a fresh process, so one side's allocations never count for another
# ---------------------------------------------------------------------------------------

def _proc_status_mib(field):
    """A memory field of /proc/self/status (Linux) in MiB, or None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 2 ** 10  # the kernel gives kB


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB.

    VmHWM where Linux has it, not ru_maxrss: the kernel carries ru_maxrss across fork and
    exec, so a child started by a 400 MiB parent reports at least 400 MiB whatever it does.
    """
    peak = _proc_status_mib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)
    return peak


def rss_mib():
    """The resident set size now, in MiB (Linux; elsewhere the peak, the best available)."""
    now = _proc_status_mib("VmRSS")
    return peak_rss_mib() if now is None else now


def child_memory(spec):
    """In a fresh process: the peak RSS after importing the side's library, and after training."""
    cfg, name = spec["cfg"], spec["side"]
    if name == "torch":
        import torch
        torch.set_num_threads(spec["threads"])  # imports torch: part of the baseline
    runtime.set_num_threads(spec["threads"])
    state = initial_state(cfg)
    data = batches(cfg, 2)
    baseline = peak_rss_mib()
    side = make_side(name, cfg, state)
    prepared = [side.prepare(*b) for b in data]
    for i in range(spec["steps"]):
        side.step(prepared[i % len(prepared)])
    return dict(baseline_mib=baseline, peak_mib=peak_rss_mib())


def child_growth(spec):
    """In a fresh process: our RSS, traced heap and live objects after N1 and after N2 steps."""
    cfg = spec["cfg"]
    runtime.set_num_threads(spec["threads"])
    side = make_side("ours", cfg, initial_state(cfg))
    prepared = [side.prepare(*b) for b in batches(cfg, 4)]
    tracemalloc.start()
    marks, done = [], 0
    for n in spec["marks"]:
        while done < n:
            side.step(prepared[done % len(prepared)])
            done += 1
        gc.collect()
        marks.append(dict(steps=n, rss_mib=rss_mib(), traced_mib=tracemalloc.get_traced_memory()[0] / 2 ** 20,
                          objects=len(gc.get_objects())))
    tracemalloc.stop()
    return dict(marks=marks)


CHILDREN = {"memory": child_memory, "growth": child_growth}


def run_child(kind, spec):
    """Run CHILDREN[kind](spec) in a new interpreter and return what it printed (JSON)."""
    cmd = [sys.executable, "-m", "benchmarks.bench", "--child", json.dumps(dict(spec, kind=kind))]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {kind} {spec} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# Generation: greedy decoding with and without the KV cache, ours and PyTorch's
# ---------------------------------------------------------------------------------------

def _decode_times(stream):
    """Seconds between the tokens a stream yields (the first, which reads the prompt, left out), and the tokens."""
    times, tokens = [], []
    t0 = time.perf_counter()
    for token in stream:
        t = time.perf_counter()
        times.append(t - t0)
        tokens.append(np.asarray(token))
        t0 = t
    return times[1:], np.concatenate(tokens, axis=1)


def generation(mode, with_torch):
    """Greedy decoding at each context length (prompt + new tokens = context), batch 1: tokens per
    second once the prompt is read, 1 / the median time from one token to the next over gen_reps
    runs (the prompt's own cost left out). Sides: ours recomputing (each token a forward over the
    whole prefix), ours with the cache, and PyTorch with its cache (torch_twin.stream).
    """
    m = MODES[mode]
    contexts, new, reps = m["gen_contexts"], m["gen_new"], m["gen_reps"]
    tinygrad_attn.manual_seed(0)
    vocab = CopyTask(MODEL["num_symbols"]).vocab_size
    cfg = TransformerConfig(vocab_size=vocab, context_length=max(contexts), d_model=m["gen_d_model"],
                            num_layers=MODEL["num_layers"], num_heads=MODEL["num_heads"])
    model = Transformer(cfg)
    sides = {"recompute": lambda prompt: model.stream(prompt, new, temperature=0.0, use_cache=False),
             "cache": lambda prompt: model.stream(prompt, new, temperature=0.0)}
    if with_torch:
        import torch
        from . import torch_twin
        twin = torch_twin.Transformer(cfg)
        twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in model.state_dict().items()})
        sides["torch_cache"] = lambda prompt: twin.stream(torch.from_numpy(prompt), new)
    rng = np.random.default_rng(3)
    rows = []
    for ctx in contexts:
        prompt = rng.integers(0, vocab, size=(1, ctx - new))  # (1, ctx - new)
        row, tokens = dict(context=ctx, new_tokens=new), {}
        for key, stream in sides.items():
            times = []
            for _ in range(reps):
                more, tokens[key] = _decode_times(stream(prompt))
                times += more
            row[f"decode_tps_{key}"] = 1 / float(np.median(times))
        row["decode_speedup"] = row["decode_tps_cache"] / row["decode_tps_recompute"]
        row["same_tokens"] = all(np.array_equal(tokens["recompute"], t) for t in tokens.values())
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------
# Profile of our training step
# ---------------------------------------------------------------------------------------

def _qualnames():
    """(file, first line) -> qualified name of every function in tinygrad_attn, e.g. 'MatMul.backward'."""
    names = {}
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("tinygrad_attn") or mod is None:
            continue
        stack = list(vars(mod).values())
        while stack:
            obj = stack.pop()
            if isinstance(obj, type) and obj.__module__ == mod_name:
                stack.extend(vars(obj).values())
            elif isinstance(obj, (staticmethod, classmethod, property)):
                stack.extend(f for f in (getattr(obj, "__func__", None), getattr(obj, "fget", None)) if f)
            code = getattr(obj, "__code__", None)
            if code is not None and getattr(obj, "__module__", None) == mod_name:
                qualname = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
                names[(code.co_filename, code.co_firstlineno)] = f"{mod_name}.{qualname}"
    return names


def profile_training(cfg, state, steps, top=25):
    """cProfile of `steps` training steps of ours; returns the printable table (top by tottime)."""
    side = make_side("ours", cfg, state)
    prepared = [side.prepare(*b) for b in batches(cfg, 4)]
    for i in range(2):
        side.step(prepared[i])
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(steps):
        side.step(prepared[i % len(prepared)])
    prof.disable()
    wall = (time.perf_counter() - t0) / steps
    stats = pstats.Stats(prof).stats  # (file, line, func) -> (primitive calls, calls, tottime, cumtime, callers)
    names = _qualnames()
    total = sum(v[2] for v in stats.values())
    lines = [f"cProfile of {steps} training steps of ours, {label(cfg)}, {runtime.get_num_threads()} threads: "
             f"{wall * 1e3:.1f} ms per step under the profiler, {total / steps * 1e3:.1f} ms of it attributed to "
             "this thread (the pool's threads are not profiled)",
             f"{'calls/step':>10} {'tottime ms/step':>15} {'%':>5} {'cumtime ms/step':>15}  function"]
    for (file, line, func), (_, calls, tt, ct, _) in sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]:
        where = names.get((file, line)) or (func if file == "~" else f"{os.path.relpath(file, REPO)}:{line}({func})")
        lines.append(f"{calls / steps:10.1f} {tt / steps * 1e3:15.3f} {100 * tt / total:5.1f} "
                     f"{ct / steps * 1e3:15.3f}  {where}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The machine, and the report
# ---------------------------------------------------------------------------------------

def blas_info():
    """numpy's BLAS: name and version from numpy.show_config, threads and kernels from OpenBLAS itself."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        text = "unknown"
    kernel = runtime.blas_kernel()
    return text if kernel is None else f"{text}, {kernel} kernels, {runtime.blas_threads()} thread"


def machine_info(with_torch, why_not="not installed"):
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"CPU": f"{cpu}, {os.cpu_count()} logical cores"
                   + (f" ({len(os.sched_getaffinity(0))} usable)" if hasattr(os, "sched_getaffinity") else ""),
            "Python": platform.python_version(), "numpy": np.__version__,
            "numpy BLAS": blas_info() + " (tinygrad_attn keeps it at one; its own pool splits large work, see "
                                        "runtime.set_num_threads)"}
    info["PyTorch"] = (f"{__import__('torch').__version__} (its own BLAS and OpenMP threads, torch.set_num_threads)"
                       if with_torch else f"{why_not}: its columns are left out")
    return info


def fmt_ms(seconds):
    return f"{seconds * 1e3:.1f}" if seconds < 10 else f"{seconds * 1e3:.0f}"


def fmt_ratio(x, target=None):
    """x to two decimals, marked against an upper-bound target if there is one."""
    return f"{x:.2f}" + ("" if target is None else (" ok" if x <= target else " **over**"))


def fmt_race(row, n):
    """ours / PyTorch of a race row at n threads, against its target; 'disturbed' if a side kept no step."""
    if min(kept for kept, _ in row["kept"].values()) == 0:
        return f"{row['ours'] / row['torch']:.2f} (disturbed)"
    return fmt_ratio(row["ours"] / row["torch"], TARGET_RATIO.get(n))


def table(head, rows):
    """Markdown table lines."""
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def render_header(r):
    out = ["# Performance", "",
           "Generated by `benchmarks/bench.py`; do not edit by hand. Rerun it with the command below.", "",
           f"Command: `{r['command']}` ({r['mode']} mode), {r['date']}, threads {', '.join(map(str, r['threads']))}.",
           ""]
    out += table(["machine", ""], [[k, v] for k, v in r["machine"].items()]) + [""]
    note = ("Timings are medians of interleaved steps in one process: comparable with each other; a turn of steps "
            "during which other processes used more than a tenth of a core is left out (the tables say how many "
            "steps were kept).")
    if r["load"]:
        note += (f" The load average (1 min) went from {min(r['load']):.2f} to {max(r['load']):.2f} during the run, "
                 f"on {os.cpu_count()} cores.")
    return out + [note, ""]


def render_training(r, m):
    torch_on = r["with_torch"]
    out = ["## Training step", "",
           f"One step = forward, cross-entropy, backward, Adam; batch {m['batch']}, {MODEL['num_layers']} layers, "
           f"{MODEL['num_heads']} heads (gqa: 2 key/value heads), copy task with {MODEL['num_symbols']} symbols, "
           f"float32. Each side times about {m['budget']:g} s of steps per cell ({m['min_steps']} to "
           f"{m['max_steps']}), after warm-up, in turns of about {m['turn']:g} s, the sides' order rotating, each "
           f"turn after {m['pause']:g} s idle. GFLOP/s: the step's matmul FLOPs (forward 2mnk per product, "
           "backward twice that: the projections, the feed-forward, both attention products over the full T x T, "
           f"out_head) over its time; the sgemm peak is numpy's OpenBLAS on a {m['peak_size']}^3 float32 product at "
           f"that many threads. Targets: ours / PyTorch at most {TARGET_RATIO[1]:g} at 1 thread and {TARGET_RATIO[2]:g} at 2; "
           f"at d_model 256, at least {TARGET_PEAK_SHARE:.0%} of the sgemm peak.", ""]
    for n in r["threads"]:
        rows = [row for row in r["train"] if row["threads"] == n]
        peak = r["peak"][str(n)]
        out += [f"### {n} thread{'s' if n > 1 else ''}: sgemm peak {peak / 1e9:.0f} GFLOP/s", ""]
        if torch_on:
            grid = []
            for d in m["d_model"]:
                cells = []
                for T in m["tokens"]:
                    pair = [row for row in rows if row["d_model"] == d and row["tokens"] == T]
                    cells.append(" / ".join(fmt_race(row, n) for row in pair))
                grid.append([f"d_model {d}"] + cells)
            out += ["Ours / PyTorch, mha / gqa:", ""]
            out += table([""] + [f"T {T}" for T in m["tokens"]], grid) + [""]
        head = ["model", "ours ms"] + (["PyTorch ms", "ours / PyTorch"] if torch_on else [])
        head += ["GFLOP", "ours GFLOP/s (of peak)"] + (["PyTorch GFLOP/s"] if torch_on else []) + ["steps kept"]
        body = []
        for row in rows:
            share = row["flops"] / row["ours"] / peak
            target = TARGET_PEAK_SHARE if row["d_model"] == 256 else None
            mark = "" if target is None else (" ok" if share >= target else " **under**")
            cells = [row["config"], fmt_ms(row["ours"])]
            if torch_on:
                cells += [fmt_ms(row["torch"]), fmt_race(row, n)]
            cells += [f"{row['flops'] / 1e9:.1f}", f"{row['flops'] / row['ours'] / 1e9:.0f} ({share:.0%}{mark})"]
            cells += [f"{row['flops'] / row['torch'] / 1e9:.0f}"] if torch_on else []
            cells.append(", ".join(f"{row['kept'][s][0]}/{row['kept'][s][1]}" for s in side_names(torch_on)))
            body.append(cells)
        out += table(head, body) + [""]
    out += ["### Fairness check (run before the timings)", "",
            "Same weights (through state_dict), same batch. Loss error relative, gradient error max |g - g_ours| / "
            f"max |g_ours| over the worst parameter, then the losses after {ADAM_CHECK_STEPS} Adam steps. "
            f"Tolerances {LOSS_TOL:g}, {GRAD_TOL:g}, {STEP_TOL:g}. The numpy model of numpy_reference.py joins on "
            f"the cells of at most {NUMPY_MAX_TOKENS} tokens a batch.", ""]
    out += table(["model", "against", "loss ours", "loss theirs", "loss err", "worst grad err (parameter)",
                  "Adam steps err", "ok"],
                 [[f["config"], f["side"], f"{f['loss_ours']:.6f}", f"{f['loss']:.6f}", f"{f['loss_err']:.1e}",
                   f"{f['grad_err']:.1e} (`{f['worst_param']}`)", f"{f['adam_err']:.1e}",
                   "yes" if f["ok"] else "**NO**"] for f in r["fairness"]])
    return out


def render_memory(r, m):
    torch_on, names = r["with_torch"], side_names(r["with_torch"])
    out = ["", "## Peak memory", "",
           f"Each side trains {m['mem_steps']} steps in a fresh process at {r['threads'][-1]} thread(s); peak RSS in MiB "
           "(VmHWM; ru_maxrss off Linux), and in brackets the part above the peak after importing its libraries "
           f"(the model, its graph and optimizer). Target: ours at most {TARGET_MEMORY:g} of PyTorch's peak.", ""]
    head = ["model", "ours"] + (["PyTorch", "ours / PyTorch (target)"] if torch_on else [])
    rows = []
    for row in r["memory"]:
        cells = [row["config"]] + [f"{row[n]['peak_mib']:.0f} ({row[n]['peak_mib'] - row[n]['baseline_mib']:.0f})"
                                   for n in names]
        if torch_on:
            cells.append(fmt_ratio(row["ours"]["peak_mib"] / row["torch"]["peak_mib"], TARGET_MEMORY))
        rows.append(cells)
    out += table(head, rows)
    g = r["growth"]
    out += ["", "## Memory growth", "",
            f"Ours, {g['config']}, in a fresh process: resident memory, the heap traced by tracemalloc (numpy arrays "
            "included) and the number of live Python objects, after a gc.collect(). Target: no growth.", ""]
    out += table(["after steps", "RSS MiB", "traced heap MiB", "live objects"],
                 [[str(k["steps"]), f"{k['rss_mib']:.1f}", f"{k['traced_mib']:.2f}", str(k["objects"])]
                  for k in g["marks"]])
    a, b = g["marks"][0], g["marks"][-1]
    return out + ["", f"Growth from {a['steps']} to {b['steps']} steps: RSS {b['rss_mib'] - a['rss_mib']:+.1f} MiB, "
                      f"traced heap {b['traced_mib'] - a['traced_mib']:+.2f} MiB, live objects "
                      f"{b['objects'] - a['objects']:+d}."]


def render_generation(r, m):
    torch_on = r["with_torch"]
    out = ["", "## Generation", "",
           f"Greedy decoding of {m['gen_new']} new tokens after a prompt that fills the rest of the context, batch 1, "
           f"d_model {m['gen_d_model']}, {MODEL['num_layers']} layers, {MODEL['num_heads']} heads. Decode only: "
           f"1 / the median time from one token to the next over {m['gen_reps']} runs, the rate once the prompt is "
           "read. Recomputing, "
           "every token reruns the model over the whole prefix (quadratic attention); with the cache one token "
           "attends to the cached keys, written in place (linear). PyTorch: the twin with its own preallocated "
           f"cache. Targets at context 1024: the cache at least {TARGET_CACHE_SPEEDUP:g}x faster than recomputing"
           + (", and at least as fast as PyTorch's." if torch_on else "."), ""]
    head = ["threads", "context", "recompute tok/s", "KV cache tok/s", "speed-up"]
    head += ["PyTorch KV cache tok/s", "ours / PyTorch (tok/s)"] if torch_on else []
    rows = []
    for row in r["generation"]:
        at_1024 = row["context"] == 1024
        speed = f"{row['decode_speedup']:.1f}x"
        if at_1024:
            speed += " ok" if row["decode_speedup"] >= TARGET_CACHE_SPEEDUP else " **under**"
        cells = [str(row["threads"]), str(row["context"]), f"{row['decode_tps_recompute']:.0f}",
                 f"{row['decode_tps_cache']:.0f}", speed]
        if torch_on:
            vs = row["decode_tps_cache"] / row["decode_tps_torch_cache"]
            cells += [f"{row['decode_tps_torch_cache']:.0f}",
                      f"{vs:.2f}" + ((" ok" if vs >= 1 else " **under**") if at_1024 else "")]
        rows.append(cells + ["yes" if row["same_tokens"] else "**NO**"])
    return out + table(head + ["same tokens"], rows)


def render(r):
    """The markdown of docs/performance.md."""
    m = MODES[r["mode"]]
    lines = render_header(r) + render_training(r, m) + render_memory(r, m) + render_generation(r, m)
    if r.get("profile"):
        lines += ["", "## Profile of our training step", "", "```text"] + r["profile"] + ["```"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer steps, the same tables (printed, not written)")
    size.add_argument("--tiny", action="store_true", help="toy sizes, a few seconds (for the test)")
    p.add_argument("--profile", action="store_true", help="print a cProfile of our training step (top 25 by tottime)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out, as if it were not installed")
    p.add_argument("--threads", type=int, action="append",
                   help="a thread count for both sides (repeatable; default 1 and 2, 1 with --tiny)")
    p.add_argument("--out", help="where to write the markdown (default: docs/performance.md in the full mode only)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: a memory measurement in a fresh process
    return p.parse_args(argv)


def log(*parts):
    print(*parts, flush=True)


def load_average():
    """The 1-minute load average, or None where the system has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run_races(mode, with_torch, thread_counts):
    """For each cell: the fairness check (at the first thread count), then the race at each thread count."""
    m, out = MODES[mode], dict(train=[], fairness=[], peak={})
    for n in thread_counts:
        out["peak"][str(n)] = sgemm_peak(n, m["peak_size"])
        log(f"  sgemm peak at {n} threads: {out['peak'][str(n)] / 1e9:.0f} GFLOP/s")
    for cfg in configs(mode):
        state, data = initial_state(cfg), batches(cfg, 2)
        for i, n in enumerate(thread_counts):
            with threads(n, with_torch):
                if i == 0:
                    names = ["ours"] + fairness_names(cfg, with_torch)
                    sides = {s: make_side(s, cfg, state) for s in names}
                    fair = check_fairness(cfg, sides, data)
                    out["fairness"] += fair
                    for f in fair:
                        log(f"  fairness {label(cfg)} vs {f['side']}: loss err {f['loss_err']:.1e}, grad err "
                            f"{f['grad_err']:.1e} ({f['worst_param']}), Adam err {f['adam_err']:.1e} -> "
                            f"{'ok' if f['ok'] else 'MISMATCH'}")
                sides = {s: make_side(s, cfg, state) for s in side_names(with_torch)}
                prepared = {s: [side.prepare(*b) for b in data] for s, side in sides.items()}
                medians, kept = race(sides, prepared, m)
            out["train"].append(dict(medians, config=label(cfg), d_model=cfg["d_model"], tokens=2 * cfg["copy_len"],
                                     attention=cfg["attention"], threads=n, flops=step_flops(cfg), kept=kept,
                                     load=load_average()))
            log(f"  train {label(cfg)}, {n} threads: " + ", ".join(f"{s} {fmt_ms(t)} ms" for s, t in medians.items())
                + (f", ratio {medians['ours'] / medians['torch']:.2f}" if with_torch else "")
                + f", {step_flops(cfg) / medians['ours'] / 1e9:.0f} GFLOP/s"
                + ", kept " + ", ".join(f"{a}/{b}" for a, b in kept.values()))
    return out


def run_memory(mode, with_torch, n_threads):
    """Peak memory of each side and our growth, each in its own process, two processes at a time.

    Nothing is timed meanwhile, so running them side by side only saves wall time.
    """
    m, names = MODES[mode], side_names(with_torch)
    cfgs = [cfg for cfg in configs(mode) if (cfg["d_model"], 2 * cfg["copy_len"]) in m["mem_cells"]]
    jobs = [("memory", dict(side=n, cfg=cfg, steps=m["mem_steps"], threads=n_threads)) for cfg in cfgs for n in names]
    jobs.append(("growth", dict(cfg=configs(mode)[0], marks=list(m["growth"]), threads=n_threads)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(lambda job: run_child(*job), jobs))
    memory = [dict(zip(names, outs[i * len(names):(i + 1) * len(names)]), config=label(cfg))
              for i, cfg in enumerate(cfgs)]
    for row in memory:
        log(f"  memory {row['config']}: " + ", ".join(f"{n} {row[n]['peak_mib']:.0f} MiB" for n in names))
    growth = dict(outs[-1], config=label(configs(mode)[0]))
    log("  growth: " + ", ".join(f"{k['steps']} steps {k['rss_mib']:.1f} MiB" for k in growth["marks"]))
    return memory, growth


def main(argv=None):
    """Run the benchmark; print the report, write it (full mode, or --out); return the results (a dict of rows)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILDREN[spec.pop("kind")](spec)))
        return None
    thread_counts = args.threads or ([1] if args.tiny else [1, 2])
    with_torch = not args.no_torch and torch_available()
    with threads(runtime.get_num_threads(), with_torch):  # and back afterwards, for a caller such as the tests
        return run(args, argv, with_torch, thread_counts)


def run(args, argv, with_torch, thread_counts):
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    load_start = load_average()
    exe = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(REPO) else "python"
    results = dict(mode=mode, with_torch=with_torch, command=" ".join([exe, "-m", "benchmarks.bench"] + argv),
                   date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   threads=thread_counts,
                   machine=machine_info(with_torch, "left out (--no-torch)" if args.no_torch else "not installed"))
    log(f"benchmark, {mode} mode, sides: {', '.join(side_names(with_torch))}, threads {thread_counts}")
    results.update(run_races(mode, with_torch, thread_counts))
    results["memory"], results["growth"] = run_memory(mode, with_torch, thread_counts[-1])
    results["generation"] = []
    for n in thread_counts:
        with threads(n, with_torch):
            for row in generation(mode, with_torch):
                results["generation"].append(dict(row, threads=n))
                log(f"  generation context {row['context']}, {n} threads: decode {row['decode_tps_recompute']:.0f} "
                    f"tok/s recompute, {row['decode_tps_cache']:.0f} tok/s cached ({row['decode_speedup']:.1f}x)"
                    + (f", PyTorch cached {row['decode_tps_torch_cache']:.0f} tok/s" if with_torch else ""))
    if args.profile:  # the smallest cell and the largest, mha
        results["profile"] = []
        cells = [cfg for cfg in configs(mode) if cfg["attention"] == "mha"]
        for n in thread_counts:
            with threads(n, with_torch):
                for cfg in (cells[0], cells[-1]) if len(cells) > 1 else cells:
                    results["profile"] += [profile_training(cfg, initial_state(cfg), MODES[mode]["profile_steps"]), ""]
    results["fair"] = all(f["ok"] for f in results["fairness"])
    loads = [load_start] + [row["load"] for row in results["train"]] + [load_average()]
    results["load"] = [x for x in loads if x is not None]  # at the start, after each race, at the end
    report = render(results)
    out = args.out or (DEFAULT_OUT if mode == "full" else None)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(report)
    print(report)
    if not results["fair"]:
        print("FAIRNESS CHECK FAILED: the sides do not compute the same thing; the timings above are not comparable",
              file=sys.stderr)
    return results


if __name__ == "__main__":
    res = main()
    sys.exit(0 if res is None or res["fair"] else 1)
