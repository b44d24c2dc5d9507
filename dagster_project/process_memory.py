"""Tile-sized buffers go back to the system as soon as they are freed, so a step that streams a
slide tile by tile keeps the same peak however many tiles it reads.

glibc raises its mmap threshold each time a large block is freed (up to 32 MB); from then on
tile-sized buffers (a few MB) come from the heap, small arrays that live longer (the stitcher's
border registrations, the calibration sample) land between them and pin it, and each of zarr's
codec threads grows its own arena. The resident set then crept up with the number of tiles:
segmenting and writing a 2048² slide peaked at 272 MB, an 8192² one at 372 MB, with no state per
nucleus held (tracemalloc). A fixed threshold of 1 MiB keeps every buffer that size or larger
in its own mapping, returned when freed: 207 and 217 MB, at the same speed (docs/speed.md).
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def return_large_buffers(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix the C library's mmap threshold for this process (which also stops it growing);
    False where the C library has no `mallopt` (not glibc) or refuses the value."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1
