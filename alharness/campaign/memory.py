"""Giving the memory a campaign's phases freed back to the operating system.

Training, the prediction pass and a strategy's selection allocate and free
hundreds of MiB in blocks that glibc's allocator serves from its heaps (its
mmap threshold rises to 32 MiB once large blocks have been freed). Freed
heap pages stay mapped to the process, so without this a campaign kept the
high-water mark of its last phase for the rest of its life: RAM counted
against every campaign packed on a node (measured: 334 of 420 MiB kept after
training MADBAL's heads on 64 images at 256×512 came back).
"""

from __future__ import annotations

import ctypes
import functools
import time


@functools.cache
def _malloc_trim():
    """libc's ``malloc_trim``, or None where the C library has none (not glibc)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> float | None:
    """Return the C heap's free pages to the OS (glibc's ``malloc_trim(0)``).

    Returns the seconds it took, or None where the C library has no
    ``malloc_trim`` (musl, macOS): there it does nothing. Values computed
    before and after are unaffected; only pages no object uses are released."""
    trim = _malloc_trim()
    if trim is None:
        return None
    t = time.perf_counter()
    trim(0)
    return time.perf_counter() - t
