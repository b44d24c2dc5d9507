"""Ingest throughput and peak memory: streaming window by window vs whole-image read.

Run: python -m pytest tests/benchmarks/test_bench_ingest.py -s
Size: NUCLEUS_BENCH_INGEST_STAINS (default 27) x NUCLEUS_BENCH_INGEST_PX (default 4096)^2 uint16,
a tiled (512 px), zlib-compressed BigTIFF OME-TIFF with 6-bit noise (so it compresses like a
real scan, about 2:1) that the benchmark writes itself.

The peer is the naive route: `tifffile.imread` of the whole image, then one write of the array
into the same slide store (same chunks, codecs and atomic publish). Peak memory is the growth of
the process's resident set over its level before each method, sampled every 5 ms.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import tifffile

from pipelines.ingest import describe, open_slide_source
from storage.slide_ingest import write_slide
from storage.slide_store import SlideInfo, create_slide, open_slide
from tests.ingest_fixtures import big_tiff_pixels, write_big_ome_tiff

STAINS = int(os.environ.get("NUCLEUS_BENCH_INGEST_STAINS", "27"))
SIZE_PX = int(os.environ.get("NUCLEUS_BENCH_INGEST_PX", "4096"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Highest resident-set growth while the block runs."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.started = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        self.growth = self.peak - self.base


def _ours(path: Path, final: Path) -> None:
    with open_slide_source(path) as source:
        info = SlideInfo("bench", source.stains, source.mpp, source.height_px, source.width_px,
                         str(source.dtype))
        write_slide(final, info, source.windows(1024), describe(source))


def _naive(path: Path, final: Path, names: list[str]) -> None:
    image = tifffile.imread(path)
    info = SlideInfo("bench", tuple(names), 0.32, image.shape[1], image.shape[2], str(image.dtype))
    with create_slide(final, info) as writer:
        writer.write(0, 0, image)
    del image


def test_bench_ingest(tmp_path):
    names = [f"S{i:02d}" for i in range(STAINS - 1)] + ["DAPI"]
    started = time.perf_counter()
    path = write_big_ome_tiff(tmp_path / "bench.ome.tif", STAINS, SIZE_PX, SIZE_PX, names,
                              tile=512, noise=True)
    raw_mb = STAINS * SIZE_PX * SIZE_PX * 2 / 1e6
    print(f"\nwrote {path.stat().st_size / 1e6:.0f} MB OME-TIFF ({raw_mb:.0f} MB raw, "
          f"{STAINS} x {SIZE_PX} x {SIZE_PX} uint16) in {time.perf_counter() - started:.1f} s")

    with PeakRss() as ours:
        _ours(path, tmp_path / "ours.zarr")
    with PeakRss() as naive:
        _naive(path, tmp_path / "naive.zarr", names)

    a, b = open_slide(tmp_path / "ours.zarr"), open_slide(tmp_path / "naive.zarr")
    for stain in (0, STAINS - 1):
        window = (SIZE_PX - 700, 100, SIZE_PX, 900)
        expected = big_tiff_pixels(stain, *window, noise=True)
        np.testing.assert_array_equal(a.read(*window)[stain], expected)
        np.testing.assert_array_equal(a.read(*window)[stain], b.read(*window)[stain])

    rows = [("streaming (ours)", ours), ("imread + one write", naive)]
    print(f"{'method':<22}{'seconds':>9}{'MB/s':>9}{'peak RSS MB':>13}")
    for label, m in rows:
        print(f"{label:<22}{m.seconds:>9.2f}{raw_mb / m.seconds:>9.1f}{m.growth / 1e6:>13.0f}")
    print(f"throughput ratio ours/naive: {naive.seconds / ours.seconds:.2f}x; "
          f"peak memory ratio naive/ours: {naive.growth / max(ours.growth, 1):.1f}x")
