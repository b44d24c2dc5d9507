"""Per-nucleus features: ours vs skimage.measure.regionprops_table (what MCQuant does).

Run: python -m pytest tests/benchmarks/test_bench_quantify.py -s
Same 27-stain uint16 image (2048 x 2048) and ~10k-nucleus mask, same process. Prints the time of
a single image.sum() over the same pixels, ours (intensity means only, and all features),
regionprops_table (with its (H, W, C) copy) and the ratios.
"""

from __future__ import annotations

import time

import numpy as np
from skimage.measure import regionprops_table

from pipelines.quantify import QuantifyParams, quantify_slide
from pipelines.segment.base import ArrayMask, ArraySlide
from pipelines.stains import COLON_PANEL

SIZE = 2048


def _nuclei_mask(size: int, seed: int = 0) -> np.ndarray:
    """~10k ellipses of 8-18 px on a jittered grid (touching neighbours included)."""
    rng = np.random.default_rng(seed)
    step = 20
    yy, xx = np.mgrid[0:size, 0:size]
    gy, gx = yy // step, xx // step
    n_side = size // step + 1
    cy = gy * step + step / 2 + rng.uniform(-3, 3, (n_side, n_side))[gy, gx]
    cx = gx * step + step / 2 + rng.uniform(-3, 3, (n_side, n_side))[gy, gx]
    a = rng.uniform(5, 9, (n_side, n_side))[gy, gx]
    b = rng.uniform(4, 7, (n_side, n_side))[gy, gx]
    theta = rng.uniform(0, np.pi, (n_side, n_side))[gy, gx]
    dy, dx = yy - cy, xx - cx
    u = (dy * np.cos(theta) + dx * np.sin(theta)) / a
    v = (-dy * np.sin(theta) + dx * np.cos(theta)) / b
    keep = rng.random((n_side, n_side)) < 0.95
    inside = (u * u + v * v <= 1) & keep[gy, gx]
    return np.where(inside, gy * n_side + gx + 1, 0).astype(np.int32)


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def test_bench_quantify() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4000, (len(COLON_PANEL), SIZE, SIZE), dtype=np.uint16)
    labels = _nuclei_mask(SIZE)
    n_nuclei = len(np.unique(labels)) - 1
    slide = ArraySlide(image, COLON_PANEL, 0.32, "bench")
    mask = ArrayMask(labels, "bench")

    t_sum, _ = _best(image.sum)
    # One tile = the whole in-memory image (same pixels as image.sum()); 1024 px tiles add a
    # copy of each tile, as reading a slide from Zarr does anyway.
    whole, tiles = QuantifyParams(SIZE, shape_features=False), QuantifyParams(1024, False)
    quantify_slide(slide, mask, tiles)  # compile the numba loops outside the timing
    t_means, ours = _best(lambda: quantify_slide(slide, mask, whole))
    t_tiles, _ = _best(lambda: quantify_slide(slide, mask, tiles))
    t_all, ours_all = _best(lambda: quantify_slide(slide, mask, QuantifyParams(SIZE)))

    def peer_means():
        hwc = np.ascontiguousarray(np.moveaxis(image, 0, -1))
        return regionprops_table(labels, intensity_image=hwc,
                                 properties=("label", "intensity_mean"))

    def peer_all():
        hwc = np.ascontiguousarray(np.moveaxis(image, 0, -1))
        return regionprops_table(
            labels, intensity_image=hwc,
            properties=("label", "centroid", "bbox", "area", "perimeter", "eccentricity",
                        "solidity", "axis_major_length", "axis_minor_length", "intensity_mean"),
        )

    t_peer_means, peer = _best(peer_means, repeat=1)
    t_peer_all, peer_full = _best(peer_all, repeat=1)

    # Same numbers, not just the same speed.
    assert ours.height == n_nuclei
    np.testing.assert_allclose(ours["mean_cd3d"].to_numpy(),
                               peer[f"intensity_mean-{COLON_PANEL.index('CD3d')}"], rtol=1e-5)
    np.testing.assert_allclose(ours_all["solidity"].to_numpy(), peer_full["solidity"], rtol=1e-9)
    np.testing.assert_allclose(ours_all["perimeter_px"].to_numpy(), peer_full["perimeter"],
                               rtol=1e-9)

    print(f"\n27 x {SIZE} x {SIZE} uint16, {n_nuclei} nuclei")
    print(f"image.sum():                         {t_sum * 1e3:8.1f} ms")
    print(f"ours, means + moments:               {t_means * 1e3:8.1f} ms "
          f"({t_means / t_sum:.2f}x image.sum)")
    print(f"ours, means + moments, 1024 px tiles: {t_tiles * 1e3:7.1f} ms "
          f"({t_tiles / t_sum:.2f}x image.sum)")
    print(f"ours, all features:                  {t_all * 1e3:8.1f} ms "
          f"({t_all / t_sum:.2f}x image.sum)")
    print(f"regionprops_table, intensity means:  {t_peer_means * 1e3:8.1f} ms "
          f"-> ours {t_peer_means / t_means:.1f}x faster")
    print(f"regionprops_table, all features:     {t_peer_all * 1e3:8.1f} ms "
          f"-> ours {t_peer_all / t_all:.1f}x faster")
