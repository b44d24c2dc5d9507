"""Tiled, stitched watershed vs one whole-image watershed call on the same synthetic slide.

Run: python -m pytest tests/benchmarks/test_bench_segment.py -s
Prints both times, their ratio (the cost of tiling + stitching) and each one's F1 at IoU 0.5
against the simulator's ground truth.
"""

import time

import numpy as np

from pipelines.segment import SegmentParams, segment_slide
from pipelines.segment.base import ArraySlide
from pipelines.segment.quality import match_score
from pipelines.segment.watershed import WatershedSegmenter
from pipelines.synthetic.cohort import CohortParams, plan_cohort, simulate_slide


def test_bench_segment() -> None:
    params = CohortParams(n_patients=2, n_slides=2, slide_px=1536, seed=11)
    sim = simulate_slide(plan_cohort(params)[0], params)
    slide = ArraySlide(sim.image, sim.stains, sim.mpp, sim.slide_id)
    backend = WatershedSegmenter()

    started = time.perf_counter()
    whole = np.zeros(sim.labels.shape, np.int32)
    for tile, block in segment_slide(slide, backend, SegmentParams(tile_px=4096)):
        whole[tile.y0 : tile.y1, tile.x0 : tile.x1] = block
    t_whole = time.perf_counter() - started

    started = time.perf_counter()
    tiled = np.zeros(sim.labels.shape, np.int32)
    run = segment_slide(slide, backend, SegmentParams(tile_px=512))
    for tile, block in run:
        tiled[tile.y0 : tile.y1, tile.x0 : tile.x1] = block
    t_tiled = time.perf_counter() - started

    f1_whole = match_score(sim.labels, whole).f1
    f1_tiled = match_score(sim.labels, tiled).f1
    same = match_score(whole, tiled)
    print(f"\n{sim.labels.shape[0]}^2 px, {int(sim.labels.max())} true nuclei")
    print(f"whole image, one call:      {t_whole:6.2f} s  F1 {f1_whole:.3f}")
    print(f"512 px tiles + halo {run.details['halo_px']} px: {t_tiled:6.2f} s  F1 {f1_tiled:.3f}"
          f"  ({t_tiled / t_whole:.2f}x the time)")
    print(f"tiled vs whole: F1 {same.f1:.4f}, mean IoU {same.mean_matched_iou:.4f}")
    assert same.f1 > 0.99
