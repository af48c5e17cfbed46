"""The serving processes' memory tuning, set once: large buffers go back to the system when
freed, and the long-lived objects stay out of the garbage collector's walks."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

# glibc's mallopt parameter, and the size from which a block gets a mapping of its own: above
# an ordinary batch's buffers, so that they reuse the heap's memory (a 1000-row batch: its body
# about 150 KB, its parse buffers over 1 MB, its encoded matrix 1.3 MB for 167
# columns; with 1 MiB, those got fresh mappings, faulted in on every request: 1 ms of a 4 ms
# batch), and under hostile bodies (6-10 MB).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024


def return_large_buffers() -> None:
    """Keep every block over 4 MiB (a large body, its parse buffers) in a mapping of its own,
    returned to the system when freed. By default glibc raises that threshold to the largest
    block freed so far (up to 32 MiB), after which such blocks come from the heap and stay
    resident: megabytes kept after one large request. Setting it once fixes it. No-op without
    glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        return


def freeze_heap() -> None:
    """Collect garbage, then move every object alive now out of the garbage collector's sight
    (``gc.freeze``). The libraries and a loaded model are some 350,000 long-lived objects:
    left tracked, every full collection walks them all, about 0.25 s with the GIL held, which
    stalls every request in flight (the p99 under load). Reference counting still frees a
    frozen object once nothing refers to it, so a replaced model is released as before (it
    holds no reference cycles)."""
    gc.collect()
    gc.freeze()
