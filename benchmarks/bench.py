"""How fast and how lean is a training step of tinygrad_attn, next to PyTorch and to plain numpy?

The copy-task model (a 2-layer pre-LayerNorm decoder, Adam, batch 64) is trained by three
implementations of one architecture, all started from the same weights:

    ours         tinygrad_attn's Transformer, Adam and cross_entropy (autograd on numpy)
    torch        torch_twin.py: PyTorch eager, hand-written attention; "torch sdpa" uses
                 F.scaled_dot_product_attention instead
    numpy        numpy_reference.py: forward and hand-derived backward in numpy, no autograd

First the three must agree on the loss, on every gradient and on the losses of a few Adam
steps (float32 tolerance), so that the race is fair. Then their steps are timed in this one
process, interleaved (turns of a few steps, the order rotating; see `interleaved`), after
warm-up, and the medians are compared; so is the forward of one attention layer. Peak
memory is read in a fresh process per side (VmHWM), growth as our RSS after N1 and after N2
steps, and greedy decoding is timed with and without the KV cache. The tables go to
docs/performance.md with the machine and the exact command.

    python -m benchmarks.bench              the full run (make bench), a few minutes
    python -m benchmarks.bench --quick      fewer steps, the same rows
    python -m benchmarks.bench --tiny       toy sizes, seconds (what tests/test_bench.py runs)
    python -m benchmarks.bench --profile    also print a cProfile of our training step
    python -m benchmarks.bench --no-torch   as if PyTorch were not installed
    python -m benchmarks.bench --threads 1  one BLAS / PyTorch thread (steadier on a busy machine)
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
from tinygrad_attn import Tensor, no_grad
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

# The model of the issue: 10 symbols, 2 layers, 4 heads; gqa shares each key/value head by 2 query heads.
MODEL = dict(num_symbols=10, num_layers=2, num_heads=4)
ATTENTIONS = (("mha", None), ("gqa", 2))
MODES = {  # a race has `rounds` turns of `block` timed steps per side (and attn_block attention calls)
    "full": dict(sizes=((64, 8), (128, 16)), batch=64, warmup=3, rounds=6, block=5, attn_block=10, pause=0.15,
                 mem_steps=10, growth=(100, 1000), gen_d_model=64, gen_contexts=(64, 256, 1024), gen_new=16,
                 gen_reps=3, profile_steps=30),
    "quick": dict(sizes=((64, 8), (128, 16)), batch=64, warmup=2, rounds=3, block=4, attn_block=5, pause=0.15,
                  mem_steps=3, growth=(30, 150), gen_d_model=64, gen_contexts=(64, 256, 1024), gen_new=8,
                  gen_reps=2, profile_steps=10),
    "tiny": dict(sizes=((16, 4),), batch=4, warmup=1, rounds=1, block=2, attn_block=2, pause=0.0,
                 mem_steps=2, growth=(3, 10), gen_d_model=16, gen_contexts=(8, 16, 32), gen_new=4,
                 gen_reps=1, profile_steps=3),
}
# Targets of issue 7, shown beside the measurements.
TARGET_RATIO = {64: 1.0, 128: 1.2}
TARGET_MEMORY = 0.5
TARGET_CACHE_SPEEDUP = 5.0


# ---------------------------------------------------------------------------------------
# The configurations and the training side of each implementation
# ---------------------------------------------------------------------------------------

def configs(mode):
    """One dict per (size, attention) of the race, in table order."""
    m = MODES[mode]
    return [dict(MODEL, d_model=d, copy_len=L, attention=att, num_kv_heads=kv, batch=m["batch"])
            for d, L in m["sizes"] for att, kv in ATTENTIONS]


def label(cfg):
    return f"d_model {cfg['d_model']}, T {2 * cfg['copy_len']}, {cfg['attention']}"


def task_of(cfg):
    return CopyTask(num_symbols=cfg["num_symbols"], min_len=cfg["copy_len"])


def model_config(cfg):
    task = task_of(cfg)
    return TransformerConfig(vocab_size=task.vocab_size, context_length=task.context_length, d_model=cfg["d_model"],
                             num_layers=cfg["num_layers"], num_heads=cfg["num_heads"],
                             num_kv_heads=cfg["num_kv_heads"])


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

    def attention_layer(self):
        return self.model.trf_blocks[0].att

    def attention_input(self, x):
        return Tensor(x)

    def attention_forward(self, layer, x):
        with no_grad():
            return layer(x).data


def set_threads(n, with_torch):
    """n threads for numpy's BLAS and for PyTorch, the same for both sides of the race."""
    if not set_blas_threads(n):
        print(f"warning: could not set numpy's BLAS threads to {n} (not OpenBLAS); set OMP_NUM_THREADS instead",
              file=sys.stderr)
    if with_torch:
        import torch
        torch.set_num_threads(n)


@contextlib.contextmanager
def threads(n, with_torch):
    """set_threads(n) inside the block, the counts there were before after it."""
    blas_threads = _openblas("get_num_threads")
    blas_before = blas_threads() if blas_threads is not None else None
    if with_torch:
        import torch
        torch_before = torch.get_num_threads()
    set_threads(n, with_torch)
    try:
        yield
    finally:
        if blas_before is not None:
            set_blas_threads(blas_before)
        if with_torch:
            torch.set_num_threads(torch_before)


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def make_side(name, cfg, state):
    """The runner `name` ("ours", "torch", "torch sdpa" or "numpy") of configuration cfg, from weights state."""
    if name == "ours":
        return Ours(model_config(cfg), state, LR)
    if name == "numpy":
        return numpy_reference.NumpySide(model_config(cfg), state, LR)
    from . import torch_twin  # imported only here: the ours and numpy processes never load torch
    return torch_twin.TorchSide(model_config(cfg), state, LR, sdpa=(name == "torch sdpa"))


def side_names(with_torch):
    """The sides of the race."""
    return ["ours", "torch", "torch sdpa", "numpy"] if with_torch else ["ours", "numpy"]


def memory_names(with_torch):
    """The sides whose memory is measured: PyTorch eager stands for PyTorch (its target is against eager)."""
    return ["ours", "torch", "numpy"] if with_torch else ["ours", "numpy"]


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


def interleaved(calls, rounds, block, warmup, pause):
    """Median seconds of each of `calls` {name: fn(i)}, timed in turns in this one process.

    Each round gives every side a turn of `block` timed calls, the order rotating from round
    to round so that a slow drift of the machine is shared. Before each turn the process
    idles `pause` seconds and makes one untimed call: OpenBLAS's worker threads spin about
    0.1 s after their last call (and OpenMP's a little), and spinning threads of the side
    before would steal the cores of this side's threads (measured: PyTorch's step went from
    25 to over 40 ms interleaved with numpy without the pause).
    """
    names = list(calls)
    for n in names:
        for i in range(warmup):
            calls[n](i)
    times = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(pause)
            calls[n](0)  # wakes this side's threads
            for i in range(block):
                t0 = time.perf_counter()
                calls[n](i)
                times[n].append(time.perf_counter() - t0)
    return {n: float(np.median(t)) for n, t in times.items()}


def race(sides, prepared, m):
    """Median seconds per training step of each side."""
    calls = {n: (lambda i, s=s, data=prepared[n]: s.step(data[i % len(data)])) for n, s in sides.items()}
    return interleaved(calls, m["rounds"], m["block"], m["warmup"], m["pause"])


def attention_race(cfg, sides, m):
    """Median seconds of one forward (no graph) of the first block's attention layer, per side,
    and the largest relative difference of each side's output to ours."""
    names = [n for n in sides if n != "numpy"]  # the numpy model has no layer object to call
    x = np.random.default_rng(2).standard_normal((cfg["batch"], 2 * cfg["copy_len"], cfg["d_model"])).astype(np.float32)
    layers = {n: sides[n].attention_layer() for n in names}
    inputs = {n: sides[n].attention_input(x) for n in names}
    errs = {n: max_rel_err(sides[n].attention_forward(layers[n], inputs[n]),
                           sides["ours"].attention_forward(layers["ours"], inputs["ours"])) for n in names}
    calls = {n: (lambda i, s=sides[n], layer=layers[n], x=inputs[n]: s.attention_forward(layer, x)) for n in names}
    return interleaved(calls, m["rounds"], m["attn_block"], 2, m["pause"]), errs


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
    set_threads(spec["threads"], name.startswith("torch"))  # imports torch: part of the baseline
    state = initial_state(cfg)
    data = batches(cfg, 4)
    baseline = peak_rss_mib()
    side = make_side(name, cfg, state)
    prepared = [side.prepare(*b) for b in data]
    for i in range(spec["steps"]):
        side.step(prepared[i % len(prepared)])
    return dict(baseline_mib=baseline, peak_mib=peak_rss_mib())


def child_growth(spec):
    """In a fresh process: our RSS, traced heap and live objects after N1 and after N2 steps."""
    cfg = spec["cfg"]
    set_threads(spec["threads"], False)
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
# Generation: greedy decoding with and without the KV cache
# ---------------------------------------------------------------------------------------

def _time_generate(model, prompt, new, use_cache, reps):
    """Median seconds of model.generate(prompt, new) (greedy), and the tokens of the last call."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = model.generate(prompt, new, temperature=0.0, use_cache=use_cache)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out.data


def generation(mode):
    """Greedy decoding at each context length (prompt + new tokens = context), with and without the cache.

    End to end: new tokens / time of generate(prompt, new). Decode only: the prompt's cost
    taken out, (new - 1) / (time(new) - time(1)): the cost of one more token, which is what
    the cache changes from a forward over the whole prefix to one token attending to it.
    """
    m = MODES[mode]
    contexts, new, reps = m["gen_contexts"], m["gen_new"], m["gen_reps"]
    tinygrad_attn.manual_seed(0)
    vocab = CopyTask(MODEL["num_symbols"]).vocab_size
    model = Transformer(TransformerConfig(vocab_size=vocab, context_length=max(contexts), d_model=m["gen_d_model"],
                                          num_layers=MODEL["num_layers"], num_heads=MODEL["num_heads"]))
    rng = np.random.default_rng(3)
    rows = []
    for ctx in contexts:
        prompt = Tensor(rng.integers(0, vocab, size=(1, ctx - new)))  # (1, ctx - new)
        row, tokens = dict(context=ctx, new_tokens=new), {}
        for use_cache, key in ((False, "recompute"), (True, "cache")):
            t_one, _ = _time_generate(model, prompt, 1, use_cache, reps)
            t_all, tokens[key] = _time_generate(model, prompt, new, use_cache, reps)
            row[f"tps_{key}"] = new / t_all
            row[f"decode_tps_{key}"] = (new - 1) / max(t_all - t_one, 1e-9)
        row["speedup"] = row["tps_cache"] / row["tps_recompute"]
        row["decode_speedup"] = row["decode_tps_cache"] / row["decode_tps_recompute"]
        row["same_tokens"] = bool(np.array_equal(tokens["recompute"], tokens["cache"]))
        rows.append(row)
    return rows, m["gen_d_model"]


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
    lines = [f"cProfile of {steps} training steps of ours, {label(cfg)}: {wall * 1e3:.1f} ms per step under the "
             f"profiler, {total / steps * 1e3:.1f} ms of it attributed",
             f"{'calls/step':>10} {'tottime ms/step':>15} {'%':>5} {'cumtime ms/step':>15}  function"]
    for (file, line, func), (_, calls, tt, ct, _) in sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]:
        where = names.get((file, line)) or (func if file == "~" else f"{os.path.relpath(file, REPO)}:{line}({func})")
        lines.append(f"{calls / steps:10.1f} {tt / steps * 1e3:15.3f} {100 * tt / total:5.1f} "
                     f"{ct / steps * 1e3:15.3f}  {where}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The machine, and the report
# ---------------------------------------------------------------------------------------

def _openblas(name):
    """The C function openblas_<name> of the OpenBLAS that numpy loaded (ctypes), or None if not found."""
    try:
        import ctypes
        with open("/proc/self/maps") as f:
            lib = next(line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line)
        so = ctypes.CDLL(lib)
    except (OSError, StopIteration):
        return None
    for symbol in (f"scipy_openblas_{name}64_", f"openblas_{name}64_", f"scipy_openblas_{name}", f"openblas_{name}"):
        if hasattr(so, symbol):
            return getattr(so, symbol)
    return None


def set_blas_threads(n):
    """Make numpy's OpenBLAS use n threads; False if it cannot be found (another BLAS)."""
    fn = _openblas("set_num_threads")
    if fn is not None:
        fn(n)
    return fn is not None


def blas_info():
    """numpy's BLAS: name and version from numpy.show_config, threads and kernel from OpenBLAS itself."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        text = "unknown"
    threads, core = _openblas("get_num_threads"), _openblas("get_corename")
    if threads is None or core is None:
        return text
    import ctypes
    core.restype = ctypes.c_char_p
    return f"{text}, {threads()} threads, {core().decode()} kernels"


def machine_info(with_torch, why_not="not installed"):
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"CPU": f"{cpu}, {os.cpu_count()} logical cores"
                   + (f" ({len(os.sched_getaffinity(0))} usable)" if hasattr(os, "sched_getaffinity") else ""),
            "Python": platform.python_version(), "numpy": np.__version__, "numpy BLAS": blas_info()}
    if with_torch:
        import torch
        info["PyTorch"] = f"{torch.__version__}, {torch.get_num_threads()} threads (torch.set_num_threads)"
    else:
        info["PyTorch"] = f"{why_not}: its columns are left out"
    return info


def fmt_ms(seconds):
    return f"{seconds * 1e3:.1f}"


def fmt_ratio(x, target=None):
    """x to two decimals, marked against an upper-bound target if there is one."""
    return f"{x:.2f}" + ("" if target is None else (" ok" if x <= target else " **over**"))


def table(head, rows):
    """Markdown table lines."""
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def render_header(r):
    out = ["# Performance", "",
           "Generated by `benchmarks/bench.py`; do not edit by hand. Rerun it with the command below.", "",
           f"Command: `{r['command']}` ({r['mode']} mode), {r['date']}.", ""]
    out += table(["machine", ""], [[k, v] for k, v in r["machine"].items()]) + [""]
    note = ("Timings are medians of interleaved steps in one process: they are comparable with each other, but a "
            "machine shared with other work makes the absolute numbers noisy.")
    if r["load"]:
        note += (f" The load average (1 min) went from {min(r['load']):.1f} to {max(r['load']):.1f} during the run, on "
                 f"{os.cpu_count()} cores")
        note += ": above the core count, other work competed for the CPU." if max(r["load"]) > os.cpu_count() else "."
    return out + [note, ""]


def render_training(r, m):
    torch_on = r["with_torch"]
    out = ["## Training step", "",
           f"One step = forward, cross-entropy, backward, Adam; batch {m['batch']}, {MODEL['num_layers']} layers, "
           f"{MODEL['num_heads']} heads (gqa: 2 key/value heads), copy task with {MODEL['num_symbols']} symbols, "
           f"float32. Median ms of {m['rounds'] * m['block']} steps per side after {m['warmup']} of warm-up, timed in "
           f"turns of {m['block']} steps, the sides' order rotating, each turn after {m['pause']:g} s idle and one "
           "untimed step (so that no library's spinning worker threads take the cores of the next).", ""]
    head = ["model", "ours"] + (["PyTorch", "PyTorch sdpa"] if torch_on else []) + ["numpy by hand"]
    head += (["ours / PyTorch (target)"] if torch_on else []) + ["ours / numpy"]
    rows = []
    for row in r["train"]:
        cells = [row["config"]] + [fmt_ms(row[n]) for n in side_names(torch_on)]
        cells += [fmt_ratio(row["ours"] / row["torch"], TARGET_RATIO.get(row["d_model"]))] if torch_on else []
        rows.append(cells + [fmt_ratio(row["ours"] / row["numpy"])])
    out += table(head, rows)
    out += ["", "### Fairness check (run before the timings)", "",
            "Same weights (through state_dict), same batch. Loss error relative, gradient error max |g - g_ours| / "
            f"max |g_ours| over the worst parameter, then the losses after {ADAM_CHECK_STEPS} Adam steps. "
            f"Tolerances {LOSS_TOL:g}, {GRAD_TOL:g}, {STEP_TOL:g}.", ""]
    out += table(["model", "against", "loss ours", "loss theirs", "loss err", "worst grad err (parameter)",
                  "Adam steps err", "ok"],
                 [[f["config"], f["side"], f"{f['loss_ours']:.6f}", f"{f['loss']:.6f}", f"{f['loss_err']:.1e}",
                   f"{f['grad_err']:.1e} (`{f['worst_param']}`)", f"{f['adam_err']:.1e}",
                   "yes" if f["ok"] else "**NO**"] for f in r["fairness"]])
    return out


def render_attention(r, m):
    torch_on = r["with_torch"]
    out = ["", "## One attention layer, forward only", "",
           f"The first block's attention on x of shape (batch, T, d_model), no graph recorded; median ms of "
           f"{m['rounds'] * m['attn_block']} calls, timed in turns as above. In brackets the largest relative "
           "difference of the output to ours.", ""]
    head = ["model", "ours"] + (["PyTorch", "PyTorch sdpa", "ours / PyTorch"] if torch_on else [])
    rows = []
    for row in r["attention"]:
        cells = [row["config"], fmt_ms(row["ours"])]
        if torch_on:
            cells += [f"{fmt_ms(row[n])} ({row['err'][n]:.0e})" for n in ("torch", "torch sdpa")]
            cells.append(fmt_ratio(row["ours"] / row["torch"]))
        rows.append(cells)
    return out + table(head, rows)


def render_memory(r, m):
    torch_on, names = r["with_torch"], memory_names(r["with_torch"])
    out = ["", "## Peak memory", "",
           f"Each side trains {m['mem_steps']} steps in a fresh process; peak RSS in MiB (VmHWM; ru_maxrss off Linux), "
           "and in brackets the part above the peak after importing its libraries (the model, its graph and "
           f"optimizer). Target: ours at most {TARGET_MEMORY:g} of PyTorch's peak.", ""]
    head = ["model", "ours"] + (["PyTorch"] if torch_on else []) + ["numpy by hand"]
    head += ["ours / PyTorch (target)"] if torch_on else []
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


def render_generation(r):
    gen = r["generation"]
    out = ["", "## Generation", "",
           f"Greedy decoding of {gen[0]['new_tokens']} new tokens after a prompt that fills the rest of the context, "
           f"batch 1, d_model {r['gen_d_model']}, {MODEL['num_layers']} layers, {MODEL['num_heads']} heads. Tokens per "
           "second end to end (prompt included), and decode only: (new - 1) / (time(new) - time(1)), the rate once "
           "the prompt is read. Without the cache every token reruns the model over the whole prefix (quadratic "
           "attention); with it one token attends to the cached keys (linear). "
           f"Target: decoding with the cache at least {TARGET_CACHE_SPEEDUP:g}x faster at context 1024.", ""]
    rows = []
    for row in gen:
        speed = f"{row['decode_speedup']:.1f}x"
        if row["context"] == 1024:
            speed += " ok" if row["decode_speedup"] >= TARGET_CACHE_SPEEDUP else " **under**"
        rows.append([str(row["context"]), f"{row['tps_recompute']:.0f}", f"{row['tps_cache']:.0f}",
                     f"{row['speedup']:.1f}x", f"{row['decode_tps_recompute']:.0f}", f"{row['decode_tps_cache']:.0f}",
                     speed, "yes" if row["same_tokens"] else "**NO**"])
    return out + table(["context", "recompute tok/s", "KV cache tok/s", "speed-up", "decode only: recompute tok/s",
                        "KV cache tok/s", "speed-up", "same tokens"], rows)


def render(r):
    """The markdown of docs/performance.md."""
    m = MODES[r["mode"]]
    lines = (render_header(r) + render_training(r, m) + render_attention(r, m) + render_memory(r, m)
             + render_generation(r))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer steps and repetitions, the same rows")
    size.add_argument("--tiny", action="store_true", help="toy sizes, a few seconds (for the test)")
    p.add_argument("--profile", action="store_true", help="print a cProfile of our training step (top 25 by tottime)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out, as if it were not installed")
    p.add_argument("--threads", type=int,
                   help="threads of numpy's BLAS and of PyTorch alike (default 2, as the issue's reference figures; "
                        "1 with --tiny, where a loaded machine would make two threads wait for each other)")
    p.add_argument("--out", default=DEFAULT_OUT, help="where to write the markdown table (default docs/performance.md)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: a memory measurement in a fresh process
    return p.parse_args(argv)


def log(*parts):
    print(*parts, flush=True)


def load_average():
    """The 1-minute load average, or None where the system has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run_races(mode, names):
    """Fairness check, training race and attention race of every configuration, in this process."""
    m, out = MODES[mode], dict(train=[], fairness=[], attention=[])
    for cfg in configs(mode):
        state, data = initial_state(cfg), batches(cfg, 4)
        sides = {n: make_side(n, cfg, state) for n in names}
        fair = check_fairness(cfg, sides, data)
        out["fairness"] += fair
        for f in fair:
            log(f"  fairness {label(cfg)} vs {f['side']}: loss err {f['loss_err']:.1e}, grad err {f['grad_err']:.1e} "
                f"({f['worst_param']}), Adam err {f['adam_err']:.1e} -> {'ok' if f['ok'] else 'MISMATCH'}")
        prepared = {n: [s.prepare(*b) for b in data] for n, s in sides.items()}
        medians = race(sides, prepared, m)
        out["train"].append(dict(medians, config=label(cfg), d_model=cfg["d_model"], attention=cfg["attention"],
                                 load=load_average()))
        log(f"  train {label(cfg)}: " + ", ".join(f"{n} {fmt_ms(t)} ms" for n, t in medians.items()))
        att, errs = attention_race(cfg, sides, m)
        out["attention"].append(dict(att, config=label(cfg), err=errs))
        log(f"  attention {label(cfg)}: " + ", ".join(f"{n} {fmt_ms(t)} ms" for n, t in att.items()))
    return out


def run_memory(mode, names, threads):
    """Peak memory of each side and our growth, each in its own process, two processes at a time.

    Nothing is timed meanwhile, so running them side by side only saves wall time.
    """
    m, cfgs = MODES[mode], configs(mode)
    jobs = [("memory", dict(side=n, cfg=cfg, steps=m["mem_steps"], threads=threads)) for cfg in cfgs for n in names]
    jobs.append(("growth", dict(cfg=cfgs[0], marks=list(m["growth"]), threads=threads)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(lambda job: run_child(*job), jobs))
    memory = [dict(zip(names, outs[i * len(names):(i + 1) * len(names)]), config=label(cfg))
              for i, cfg in enumerate(cfgs)]
    for row in memory:
        log(f"  memory {row['config']}: " + ", ".join(f"{n} {row[n]['peak_mib']:.0f} MiB" for n in names))
    growth = dict(outs[-1], config=label(cfgs[0]))
    log("  growth: " + ", ".join(f"{k['steps']} steps {k['rss_mib']:.1f} MiB" for k in growth["marks"]))
    return memory, growth


def main(argv=None):
    """Run the benchmark; print and write the report; return the results (a dict of rows)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILDREN[spec.pop("kind")](spec)))
        return None
    args.threads = args.threads or (1 if args.tiny else 2)
    with_torch = not args.no_torch and torch_available()
    with threads(args.threads, with_torch):  # and back, for a caller such as the test suite
        return run(args, argv, with_torch)


def run(args, argv, with_torch):
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    load_start = load_average()
    names = side_names(with_torch)
    exe = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(REPO) else "python"
    results = dict(mode=mode, with_torch=with_torch, command=" ".join([exe, "-m", "benchmarks.bench"] + argv),
                   date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   machine=machine_info(with_torch, "left out (--no-torch)" if args.no_torch else "not installed"))
    log(f"benchmark, {mode} mode, sides: {', '.join(names)}")
    results.update(run_races(mode, names))
    results["memory"], results["growth"] = run_memory(mode, memory_names(with_torch), args.threads)
    results["generation"], results["gen_d_model"] = generation(mode)
    for row in results["generation"]:
        log(f"  generation context {row['context']}: decode {row['decode_tps_recompute']:.0f} tok/s recompute, "
            f"{row['decode_tps_cache']:.0f} tok/s cached ({row['decode_speedup']:.1f}x)")
    results["fair"] = all(f["ok"] for f in results["fairness"])
    loads = [load_start] + [row["load"] for row in results["train"]] + [load_average()]
    results["load"] = [x for x in loads if x is not None]  # at the start, after each race, at the end
    report = render(results)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    print(report)
    if args.profile:
        results["profile"] = [profile_training(cfg, initial_state(cfg), MODES[mode]["profile_steps"])
                              for cfg in configs(mode) if cfg["attention"] == "mha"]
        print("\n\n".join(results["profile"]))
    if not results["fair"]:
        print("FAIRNESS CHECK FAILED: the sides do not compute the same thing; the timings above are not comparable",
              file=sys.stderr)
    return results


if __name__ == "__main__":
    res = main()
    sys.exit(0 if res is None or res["fair"] else 1)
