"""The campaign gives the heap pages its phases freed back to the OS."""

import numpy as np
import pytest

from alharness.campaign.memory import release_freed_memory


def _anon_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no RssAnon in /proc/self/status")


def test_freed_heap_blocks_below_the_mmap_threshold_go_back_to_the_os():
    if release_freed_memory() is None:
        pytest.skip("the C library has no malloc_trim (not glibc)")
    # 4000 blocks of 100 kB come from the heap (below glibc's mmap threshold); the last one
    # kept pins the heap's top, so free() alone cannot shrink it.
    blocks = [np.ones(100_000 // 8) for _ in range(4000)]
    keep = blocks[-1]
    del blocks
    before = _anon_mib()
    assert release_freed_memory() >= 0
    after = _anon_mib()
    assert before - after > 200, (before, after)
    assert keep.sum() == len(keep)  # what is still used is untouched
