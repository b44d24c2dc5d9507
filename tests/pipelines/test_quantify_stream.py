"""The streaming pass gives each nucleus once, strip by strip, and holds no state per nucleus
of the slide: its peak memory stays flat while the slide grows 4-fold."""

import tracemalloc

import numpy as np
import polars as pl

from pipelines.quantify import (
    FeatureSummary,
    QuantifyParams,
    SlideFeatures,
    feature_checks,
    quantify_slide,
)
from pipelines.quantify.slide import _LabelRanges
from pipelines.segment.base import ArrayMask, ArraySlide
from tests.pipelines.test_quantify import STAINS, reference, tall_field

N_STAINS = 27


def test_strips_give_every_nucleus_once_and_revise_labels_in_pieces() -> None:
    image, labels = tall_field()
    features = SlideFeatures(ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1"),
                             QuantifyParams(tile_px=40))
    frames = list(features)
    given = pl.concat(frames)
    assert given["label"].is_unique().all()
    assert sorted(given["label"]) == np.unique(labels[labels > 0]).tolist()
    assert all(f["label"].is_sorted() for f in frames)
    # Labels in pieces across strips: given with their first piece, then revised whole.
    assert sorted(features.revisit) == [1009, 5000]
    revised = features.revise(given.filter(pl.col("label").is_in([1009, 5000])))
    ref = reference(image, labels).filter(pl.col("label").is_in([1009, 5000]))
    assert revised["label"].to_list() == [1009, 5000]
    np.testing.assert_array_equal(revised["area_px"], ref["area"])
    np.testing.assert_allclose(revised["solidity"], ref["solidity"], rtol=1e-9)
    np.testing.assert_allclose(revised["mean_cd3d"], ref["intensity_mean-1"], rtol=1e-6)
    first = given.filter(pl.col("label") == 5000)["area_px"].item()
    assert first == 30 and revised.filter(pl.col("label") == 5000)["area_px"].item() == 42
    assert features.n_nuclei == given.height


def test_summary_of_streamed_rows_gives_the_checks_of_the_whole_frame() -> None:
    image, labels = tall_field()
    slide, mask = ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1")
    summary = FeatureSummary()
    for frame in SlideFeatures(slide, mask, QuantifyParams(tile_px=40)):
        summary.add(frame)
    whole = quantify_slide(slide, mask, QuantifyParams(tile_px=40))
    assert summary.median_area_um2() == whole["area_um2"].median()
    odd = whole.head(whole.height - 1)
    summary.add(whole.tail(1), sign=-1)  # rows counted out again, as replaced rows are
    assert summary.median_area_um2() == odd["area_um2"].median()
    summary.add(whole.tail(1))
    assert summary.checks() == feature_checks(whole)
    assert summary.checks(min_area_um2=500.0) == feature_checks(whole, min_area_um2=500.0)
    nan = whole.with_columns(pl.lit(float("nan"), pl.Float32).alias("mean_cd3d"))
    flagged = FeatureSummary()
    flagged.add(nan)
    assert flagged.checks() == feature_checks(nan)
    assert FeatureSummary().checks() == feature_checks(whole.head(0))


def test_label_ranges_hold_ranges_not_labels() -> None:
    given = _LabelRanges()
    given.add(np.array([1, 2, 3, 7, 8]))
    given.add(np.array([4, 5, 6, 10]))
    assert len(given) == 2  # [1, 9) and [10, 11)
    probe = np.array([0, 1, 6, 8, 9, 10, 11])
    assert given.contains(probe).tolist() == [False, True, True, True, False, True, False]


def _grid_slide(height_px: int, width_px: int = 256, seed: int = 0):
    """3x3 px nuclei every 5 px, numbered in raster order (as a stitched mask numbers them),
    and 27 stains of noise."""
    labels = np.zeros((height_px, width_px), np.int32)
    ny, nx = height_px // 5, width_px // 5
    ids = np.arange(1, ny * nx + 1, dtype=np.int32).reshape(ny, nx)
    for dy in range(3):
        for dx in range(3):
            labels[dy : 5 * ny : 5, dx : 5 * nx : 5] = ids
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 4000, (N_STAINS, height_px, width_px)).astype(np.uint16)
    stains = [f"S{k}" for k in range(N_STAINS)]
    return ArraySlide(image, stains, 0.5, "s1"), ArrayMask(labels, "s1"), ny * nx


def _streaming_peak_bytes(height_px: int) -> tuple[int, int]:
    slide, mask, n_nuclei = _grid_slide(height_px)
    features = SlideFeatures(slide, mask, QuantifyParams(tile_px=64))
    tracemalloc.start()
    try:
        rows = sum(frame.height for frame in features)  # each strip's rows dropped once seen
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == n_nuclei
    return peak, n_nuclei


def test_streaming_peak_memory_does_not_grow_with_the_nuclei() -> None:
    _streaming_peak_bytes(64)  # first use: compiled kernels and caches load
    small, n_small = _streaming_peak_bytes(256)
    large, n_large = _streaming_peak_bytes(1024)
    assert n_large - n_small > 7_500
    # Kept per nucleus (sums of 27 stains, moments, box: ~330 bytes) the 4x slide would add
    # about 2.5 MB; the pass holds one strip of tiles, the same at both heights.
    assert large < 1.15 * small + 64_000, (small, large)
