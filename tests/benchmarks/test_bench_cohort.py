"""Time to generate the demo cohort (28 slides of 1024 x 1024 px, 27 stains) on this machine.

There is no peer implementation to race; the figures to watch are seconds in total, seconds
per slide and MB/s of OME-TIFF + truth written. Run with
`python -m pytest tests/benchmarks/test_bench_cohort.py -s`.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from pipelines.synthetic import CohortParams, simulate_cohort
from storage.cohort_files import write_cohort


def test_bench_demo_cohort(tmp_path: Path) -> None:
    params = CohortParams()
    workers = min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    cpu0 = time.process_time()
    summary = write_cohort(tmp_path / "cohort", simulate_cohort(params, workers), params.as_dict())
    seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker processes, joined
    workers_cpu = children.ru_utime + children.ru_stime
    raw_mb = summary.n_slides * 27 * params.slide_px**2 * 2 / 1e6
    print(
        f"\ndemo cohort: {summary.n_slides} slides, {summary.n_nuclei} nuclei, "
        f"{workers} worker(s): {seconds:.1f} s ({seconds / summary.n_slides:.2f} s/slide), "
        f"{raw_mb / seconds:.0f} MB/s of uint16 pixels, "
        f"{summary.bytes_written / 1e6 / seconds:.0f} MB/s written "
        f"({summary.bytes_written / 1e6:.0f} MB on disk); "
        f"CPU: main process (writing) {time.process_time() - cpu0:.1f} s, workers "
        f"(simulating) {workers_cpu:.1f} s = {workers_cpu / summary.n_slides:.2f} s/slide"
    )
    assert summary.n_slides == 28
