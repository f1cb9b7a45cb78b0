"""Settings of the process the engine runs in, kept out of the engine so that engine.py reads as autograd.

keep_freed_memory() runs once when tinygrad_attn is imported.
"""

import ctypes
import os
import sys


def keep_freed_memory():
    """Ask glibc's malloc to reuse freed blocks instead of handing them back to the kernel.

    Every op allocates fresh numpy temporaries of the same few sizes. By default glibc unmaps
    each freed block over 128 KiB, so the next allocation of it page-faults in zeroed pages,
    and elementwise ops spend most of their time there: on a (64, 16, 256) float32 GELU,
    1.9 ms of page faults for 0.15 ms of arithmetic (measured on the 2-core VM we develop on;
    a d64 training step went from 67 to 47 ms). PyTorch's caching allocator avoids the same
    cost. Set TINYGRAD_ATTN_MALLOC=default to opt out; other C libraries keep their defaults.
    """
    if not sys.platform.startswith("linux") or os.environ.get("TINYGRAD_ATTN_MALLOC") == "default":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # blocks up to 32 MiB (glibc's maximum) come from the heap
        libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)  # and the heap is trimmed only past 256 MiB of free top
    except (OSError, AttributeError):  # not glibc (musl, ...)
        pass
