"""A fixed mmap threshold keeps a tile-streaming process's resident set flat: measured in a
fresh process that frees tile-sized buffers between small arrays it keeps, as the stitcher
and the calibration sample do."""

import ctypes
import subprocess
import sys

import pytest

from dagster_project.process_memory import return_large_buffers

GLIBC = hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# Tile-sized buffers of varying size freed after each tile, small arrays kept for a while.
_LOOP = """
import sys
import numpy as np
from dagster_project.process_memory import return_large_buffers
if sys.argv[1] == "fixed":
    assert return_large_buffers()
kept = []
for tile in range({tiles}):
    window = np.ones((1000 + tile % 7 * 61, 1024), np.float32)
    smoothed = window * 2
    kept.append(np.ones(20_000 + tile % 5 * 100, np.float32))
    del window, smoothed
    kept = kept[-16:]
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) // 1024)
"""


def _peak_mb(mode: str, tiles: int) -> int:
    out = subprocess.run([sys.executable, "-c", _LOOP.format(tiles=tiles), mode],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_threshold_is_set_and_the_peak_stays_flat_over_tiles() -> None:
    assert return_large_buffers() is True
    few, many = _peak_mb("fixed", 4), _peak_mb("fixed", 64)
    assert many <= few + 5, (few, many)  # glibc's growing threshold: about +10 MB here
