"""The gallery's key-stain windows and the virtual H&E level geometry, on numbers read here."""

import numpy as np

from pipelines.patches import ResampleGrid
from pipelines.vhe.gallery import centroid_window, key_stain_pairs, window_half_px
from pipelines.vhe.streaming import LevelGeometry, render_levels


def test_window_around_a_centroid_is_clipped_at_the_top_left():
    # a 41 px patch at 0.5 µm/px spans 41 * 0.5 / 0.32 = 64.06 slide px: half is 33 (ceil 32.03)
    half = window_half_px(41, 0.5 / 0.32)
    assert half == 33
    assert centroid_window(100.4, 50.6, half) == (67, 18, 134, 85)
    assert centroid_window(10.0, 3.0, half) == (0, 0, 44, 37)


def test_key_stain_pairs_share_one_scale():
    windows = [np.arange(100, dtype=np.float32).reshape(10, 10), np.full((4, 4), 200.0)]
    patches = [np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)]
    pairs = key_stain_pairs(patches, windows)
    pooled = np.concatenate([w.ravel() for w in windows])
    low, high = np.percentile(pooled, [5, 99.5])
    assert [p is q for (p, _), q in zip(pairs, patches, strict=True)] == [True, True]
    first = pairs[0][1]
    assert first.shape == (10, 10, 3) and not first[..., [0, 2]].any()
    assert first[0, 0, 1] == 0  # 0 lies below the 5th percentile
    expected = np.round(np.clip((50 - low) / (high - low), 0, 1) * 255)
    assert first[5, 0, 1] == expected
    assert (pairs[1][1][..., 1] == 255).all()  # 200 lies above the 99.5th percentile


def test_render_levels_chunk_one_tile_of_each_level():
    grid = ResampleGrid.between(0.32, 0.5)  # 25 slide px span 16 patch px
    assert (grid.p, grid.q) == (25, 16)
    levels = render_levels(0.32, 260, 300, grid.align(512), grid)
    assert levels[0] == LevelGeometry(0.32, 260, 300, 525)
    assert levels[1] == LevelGeometry(0.5, 166, 192, 336)
