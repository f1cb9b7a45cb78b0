"""Settings of the process the engine runs in, kept out of the engine so that engine.py reads as autograd.

  keep_freed_memory()    glibc's malloc keeps freed blocks (runs once when tinygrad_attn is imported)
  set_num_threads(n)     the cores the engine uses: numpy's BLAS at one thread, and a pool of n threads
                         that the fused ops (fused.py) split their large work over (runs once on import)
  parallel_for(fn, n, cost)   that split
  fused_ops(False)       run the fused ops as the compositions of basic ops they replace (for drawings)
"""

import contextlib
import ctypes
import os
import queue
import sys
import threading


def keep_freed_memory():
    """Ask glibc's malloc to reuse freed blocks instead of handing them back to the kernel.

    Every op allocates fresh numpy temporaries of the same few sizes. By default glibc unmaps
    each freed block over 128 KiB, so the next allocation of it page-faults in zeroed pages,
    and elementwise ops spend most of their time there: on a (64, 16, 256) float32 GELU,
    1.9 ms of page faults for 0.15 ms of arithmetic (measured on the 2-core VM we develop on;
    a d64 training step went from 67 to 47 ms). Past 32 MiB (the largest mmap threshold) glibc
    always maps, and a heap that shrinks hands its top back: at d_model 256, T 512 a step's
    arrays are 33-268 MiB, and a fresh 134 MiB block cost 8-300 ms of faults (300 the first time
    the VM's memory is touched), so the step took 5.6 s instead of 4.4. Hence no mmap and no
    trimming: the process keeps its peak heap, as PyTorch's caching allocator keeps its blocks.
    Set TINYGRAD_ATTN_MALLOC=default to opt out; other C libraries keep their defaults.
    """
    if not sys.platform.startswith("linux") or os.environ.get("TINYGRAD_ATTN_MALLOC") == "default":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
        libc.mallopt(M_MMAP_MAX, 0)  # every block comes from the heap, also those past 32 MiB (mmap's threshold max)
        libc.mallopt(M_TRIM_THRESHOLD, -1)  # and the heap is never trimmed (-1: the largest size_t)
    except (OSError, AttributeError):  # not glibc (musl, ...)
        pass


# ---------------------------------------------------------------------------------------
# Threads: numpy's BLAS, and the pool of the fused ops
# ---------------------------------------------------------------------------------------

def openblas_function(name):
    """The C function openblas_<name> of the OpenBLAS that numpy loaded (ctypes), or None if there is none.

    numpy's wheels bundle scipy-openblas, whose symbols carry a prefix and a suffix
    (scipy_openblas_set_num_threads64_); other builds have the plain names. Calling it costs
    about a microsecond (threadpoolctl, which finds every BLAS of the process, about a millisecond).
    """
    try:
        with open("/proc/self/maps") as f:
            lib = next(line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line)
        so = ctypes.CDLL(lib)
    except (OSError, StopIteration):
        return None
    for symbol in (f"scipy_openblas_{name}64_", f"openblas_{name}64_", f"scipy_openblas_{name}", f"openblas_{name}"):
        if hasattr(so, symbol):
            return getattr(so, symbol)
    return None


def blas_threads():
    """The threads numpy's OpenBLAS uses, or None if numpy's BLAS is not OpenBLAS."""
    fn = openblas_function("get_num_threads")
    return None if fn is None else fn()


def blas_kernel():
    """The CPU kernels OpenBLAS chose at load time ("Haswell", "SkylakeX", ...), or None."""
    fn = openblas_function("get_corename")
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def set_blas_threads(n):
    """Make numpy's OpenBLAS use n threads; False if numpy's BLAS is not OpenBLAS."""
    fn = openblas_function("set_num_threads")
    if fn is not None:
        fn(n)
    return fn is not None


class _Worker:
    """A thread of the pool: it runs the jobs handed to it, in order, each [fn, rows, done, error] with
    its own lock `done`, released when it has run. A lock of its own per job means that a caller
    that stops waiting (an exception, a Ctrl-C) leaves nothing behind for the next job to trip on.
    Through concurrent.futures (a Future and its Condition per job) a job cost 15-25 us more, and a
    training step at d_model 64, T 32 hands out 54 jobs."""

    def __init__(self):
        self.jobs = queue.SimpleQueue()
        threading.Thread(target=self.run, name="tinygrad_attn", daemon=True).start()

    def submit(self, fn, rows):
        job = [fn, rows, threading.Lock(), None]
        job[2].acquire()
        self.jobs.put(job)
        return job

    def stop(self):
        self.jobs.put(None)  # after the jobs already handed over

    def run(self):
        while self.run_job(self.jobs.get()):
            pass

    @staticmethod
    def run_job(job):
        """Runs a job and forgets its function (and the arrays it holds); False for the end."""
        if job is None:
            return False
        try:
            job[0](job[1])
        except BaseException as e:  # raised again in the caller by parallel_for
            job[3] = e
        job[0] = None
        job[2].release()
        return True


_num_threads = 1
_workers = []  # num_threads - 1 of them; the calling thread is the last one
_in_use = threading.Lock()  # held while a parallel_for hands out its shares, or set_num_threads changes the pool


def set_num_threads(n):
    """Use n cores (torch.set_num_threads): fused ops split large work over a pool of n threads, and
    numpy's BLAS is set to one thread.

    Why BLAS gets one thread: OpenBLAS's threads spin-wait between calls, and when another
    process holds a core they wait for it a scheduler slice at a time. A 256 x 256 matmul took
    0.27 ms on one thread and 10-16 ms on two with the second core busy, and `make train` 38-70 s
    instead of 4.5 s. The pool's threads sleep between jobs instead: with a core busy, a split job
    takes about as long as on one thread, not ten times longer. A large matmul split by rows over
    the pool runs as fast as on OpenBLAS's own threads (each piece is still one BLAS call: (8192,
    128) @ (128, 512) in 10.1 ms on one thread, 5.0 on two), and small work is never split (see
    parallel_for). The price is fine-grained work: sleeping threads take tens of microseconds to
    wake on a VM, so ops of a fraction of a millisecond gain little (see parallel_for).
    """
    global _num_threads, _workers
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    set_blas_threads(1)
    with _in_use:  # (not while another thread's parallel_for hands jobs to the workers)
        for worker in _workers:
            worker.stop()
        _num_threads = n
        _workers = [_Worker() for _ in range(n - 1)]


def get_num_threads():
    return _num_threads


def _new_pool_after_fork():
    """A forked child has only the thread that forked: the pool's workers stayed in the parent, and
    a job handed to them would wait forever. The child gets a pool of its own."""
    global _workers, _in_use
    _workers, _in_use = [_Worker() for _ in range(_num_threads - 1)], threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_pool_after_fork)


def default_num_threads():
    """TINYGRAD_ATTN_THREADS if set, else the cores this process may run on."""
    given = os.environ.get("TINYGRAD_ATTN_THREADS")
    if given:
        return int(given)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def num_threads(n):
    """set_num_threads(n) inside the block, the count before after it."""
    before = _num_threads
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(before)


MIN_COST = 1 << 18  # the least work worth a piece: about 50 us on one core (a pool round trip: 25-50)


def parallel_for(fn, n, cost):
    """Call fn(rows) for slices `rows` that together cover range(n) once each, one slice per thread,
    at the same time, when `cost` (about five times the nanoseconds the work takes on one core:
    the element passes, or a sixteenth of a matmul's FLOPs) pays for the split; else fn(slice(0, n)).

    fn must write only its own rows of its outputs. numpy releases the GIL inside its loops and
    BLAS calls, so the threads compute side by side. Each thread always gets the same share of the
    rows, the caller the first: the next op then reads, on each core, rows that core wrote (handing
    out smaller pieces to whichever thread is free made a d64 T32 step slower on two threads than
    on one: 26 ms against 22; with fixed shares 20.5). A call made while the pool is busy, from
    another thread or from inside a job, runs unsplit on its own thread.
    """
    pieces = min(n, _num_threads, int(cost // MIN_COST))
    if pieces < 2 or not _in_use.acquire(blocking=False):  # (busy: called from a second thread, or from a job)
        fn(slice(0, n))
        return
    jobs = []
    try:
        pieces = min(pieces, len(_workers) + 1)  # (the pool as it is now that the lock is ours)
        bounds = [n * i // pieces for i in range(pieces + 1)]  # (np.linspace takes 10 us for this)
        for worker, a, b in zip(_workers, bounds[1:-1], bounds[2:]):
            jobs.append(worker.submit(fn, slice(a, b)))
        fn(slice(0, bounds[1]))
    finally:
        try:
            for job in jobs:
                job[2].acquire()  # until it has run, also when the caller's own share raised
        finally:
            _in_use.release()
    for job in jobs:
        if job[3] is not None:
            raise job[3]


# ---------------------------------------------------------------------------------------
# The switch between the fused ops and the compositions they replace
# ---------------------------------------------------------------------------------------

_fused = True


def fused_ops_enabled():
    return _fused


@contextlib.contextmanager
def fused_ops(enabled=True):
    """Inside `with fused_ops(False):` every fused op of fused.py runs as the composition of basic
    ops it replaces, with the same values and gradients (to float rounding), so a drawing shows
    an attention layer's steps (queries @ keys^T, mask, scale, softmax, @ values) instead of one box."""
    global _fused
    before, _fused = _fused, bool(enabled)
    try:
        yield
    finally:
        _fused = before
