"""Per-nucleus features equal skimage's regionprops, whatever the tiling, with or without numba."""

import numpy as np
import polars as pl
import pytest
from skimage.measure import regionprops_table

from pipelines.ids import mask_label, nucleus_ids
from pipelines.quantify import (
    QuantifyParams,
    closed_strips,
    empty_features,
    feature_checks,
    feature_schema,
    quantify_slide,
    runs,
)
from pipelines.segment.base import ArrayMask, ArraySlide

STAINS = ("DAPI", "CD3d", "NaKATPase")
PAIRS = {
    "centroid-0": "centroid_y_px", "centroid-1": "centroid_x_px",
    "bbox-0": "bbox_y0_px", "bbox-1": "bbox_x0_px", "bbox-2": "bbox_y1_px", "bbox-3": "bbox_x1_px",
    "area": "area_px", "perimeter": "perimeter_px", "eccentricity": "eccentricity",
    "solidity": "solidity", "axis_major_length": "major_axis_px",
    "axis_minor_length": "minor_axis_px",
    "intensity_mean-0": "mean_dapi", "intensity_mean-1": "mean_cd3d",
    "intensity_mean-2": "mean_nakatpase",
}


def shapes_field(seed: int = 0, shape=(230, 250)):
    """Ellipses, an L, a ring, a disconnected label, single pixels and nuclei on the edges."""
    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(1, 60):
        cy, cx = rng.uniform(-5, h + 5), rng.uniform(-5, w + 5)
        a, b, th = rng.uniform(2, 14), rng.uniform(1, 8), rng.uniform(0, np.pi)
        u = ((yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)) / a
        v = (-(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)) / b
        labels[(u * u + v * v <= 1) & (labels == 0)] = k + 100
    labels[5:40, 100:106] = 7
    labels[34:40, 100:130] = 7  # an L
    ring = (np.hypot(yy - 150, xx - 60) < 14) & (np.hypot(yy - 150, xx - 60) > 8)
    labels[ring] = 8
    labels[200:205, 10:15] = 9
    labels[210:214, 30:33] = 9  # one label, two pieces
    labels[100, 200] = 10  # one pixel
    image = rng.integers(0, 4000, (len(STAINS), *shape)).astype(np.uint16)
    return image, labels


def reference(image, labels) -> pl.DataFrame:
    props = regionprops_table(labels, intensity_image=np.moveaxis(image, 0, -1),
                              properties=("label", "centroid", "bbox", "area", "perimeter",
                                          "eccentricity", "solidity", "axis_major_length",
                                          "axis_minor_length", "intensity_mean"))
    return pl.DataFrame(props)


def assert_like_regionprops(frame: pl.DataFrame, ref: pl.DataFrame, atol: float = 1e-6) -> None:
    np.testing.assert_array_equal(frame["label"].to_numpy(), ref["label"].to_numpy())
    for theirs, ours in PAIRS.items():
        np.testing.assert_allclose(frame[ours].to_numpy(), ref[theirs].to_numpy(),
                                   rtol=1e-5, atol=atol, err_msg=ours)


@pytest.mark.parametrize("tile_px", [1024, 64, 37])
def test_features_equal_regionprops_for_any_tiling(tile_px) -> None:
    image, labels = shapes_field()
    frame = quantify_slide(ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1"),
                           QuantifyParams(tile_px=tile_px))
    assert_like_regionprops(frame, reference(image, labels))


def tall_field() -> tuple[np.ndarray, np.ndarray]:
    """Three shape fields stacked (690 x 250 px), plus one label in two pieces 60 rows apart."""
    fields = [shapes_field(seed) for seed in (3, 4, 5)]
    image = np.concatenate([f[0] for f in fields], axis=1)
    labels = np.concatenate([f[1] + 1000 * k * (f[1] > 0) for k, f in enumerate(fields)], axis=0)
    labels[300:305, 240:246] = 5000
    labels[365:368, 200:204] = 5000  # one label, pieces in different strips
    return image, labels


def test_only_nuclei_crossing_the_strip_border_stay_open() -> None:
    image, labels = tall_field()
    slide, mask = ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1")
    strips = list(closed_strips(slide, mask, QuantifyParams(tile_px=40)))
    assert len(strips) == 18  # 690 rows in strips of 40
    for k, strip in enumerate(strips[:-1]):
        border_row = labels[40 * (k + 1) - 1]
        crossing = np.unique(border_row[border_row > 0])
        assert strip.open_nuclei == crossing.size  # held rows: only these nuclei's
        above = labels[: 40 * (k + 1)]
        rows_so_far = sum(np.count_nonzero((above == lab).any(axis=1)) for lab in crossing)
        assert strip.open_rows == rows_so_far
    assert strips[-1].open_nuclei == 0
    finished, times = np.unique(np.concatenate([s.part.label for s in strips]),
                                return_counts=True)
    assert finished.tolist() == np.unique(labels[labels > 0]).tolist()
    assert finished[times > 1].tolist() == [1009, 5000]  # the two labels in pieces across strips


def test_multi_strip_slide_equals_regionprops() -> None:
    image, labels = tall_field()
    frame = quantify_slide(ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1"),
                           QuantifyParams(tile_px=40))
    # Moments about the slide origin lose ~1e-6 of eccentricity to cancellation for round
    # nuclei 600 rows down (the same with one tile).
    assert_like_regionprops(frame, reference(image, labels), atol=1e-5)


def test_numpy_fallback_gives_the_same_numbers(monkeypatch) -> None:
    image, labels = shapes_field(seed=1)
    slide, mask = ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1")
    fast = quantify_slide(slide, mask, QuantifyParams(tile_px=64))
    monkeypatch.setattr(runs, "_label_sums_int", None)
    monkeypatch.setattr(runs, "_runs_count", None)
    slow = quantify_slide(slide, mask, QuantifyParams(tile_px=64))
    assert fast.equals(slow)


def test_float_images_and_units() -> None:
    image, labels = shapes_field(seed=2)
    image = image.astype(np.float32) / 7
    frame = quantify_slide(ArraySlide(image, STAINS, 0.32, "slide-A"),
                           ArrayMask(labels, "slide-A"), QuantifyParams(tile_px=100))
    assert_like_regionprops(frame, reference(image, labels))
    np.testing.assert_allclose(frame["centroid_x_um"], frame["centroid_x_px"] * 0.32)
    np.testing.assert_allclose(frame["area_um2"], frame["area_px"] * 0.32**2)
    assert (frame["nucleus_id"].to_numpy() == nucleus_ids("slide-A", frame["label"])).all()
    assert (mask_label(frame["nucleus_id"].to_numpy()) == frame["label"].to_numpy()).all()
    assert (frame["slide_id"] == "slide-A").all()


def test_schema_is_the_contract() -> None:
    image, labels = shapes_field()
    frame = quantify_slide(ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1"))
    assert dict(frame.schema) == feature_schema(STAINS)
    assert frame.columns[:3] == ["nucleus_id", "slide_id", "label"]
    assert frame.columns[-3:] == ["mean_dapi", "mean_cd3d", "mean_nakatpase"]
    assert frame["mean_dapi"].dtype == pl.Float32 and frame["bbox_y1_px"].dtype == pl.Int32


def test_without_shape_features_perimeter_and_solidity_are_nan() -> None:
    image, labels = shapes_field()
    frame = quantify_slide(ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1"),
                           QuantifyParams(tile_px=50, shape_features=False))
    ref = reference(image, labels)
    np.testing.assert_allclose(frame["mean_cd3d"], ref["intensity_mean-1"], rtol=1e-6)
    np.testing.assert_allclose(frame["eccentricity"], ref["eccentricity"], atol=1e-6)
    assert frame["solidity"].is_nan().all() and frame["perimeter_px"].is_nan().all()


def test_empty_mask_gives_an_empty_frame_with_the_full_schema() -> None:
    image = np.ones((3, 90, 70), np.uint16)
    frame = quantify_slide(ArraySlide(image, STAINS, 0.5, "s1"),
                           ArrayMask(np.zeros((90, 70), np.int32), "s1"), QuantifyParams(64))
    assert frame.height == 0 and frame.schema == empty_features(STAINS).schema
    checks = feature_checks(frame)
    assert checks["nucleus_count_positive"][0] is False
    assert checks["no_nan_intensities"][0] is True


def test_mask_of_another_shape_is_refused() -> None:
    from pipelines.errors import SlideInputError

    with pytest.raises(SlideInputError, match="re-run nucleus_mask"):
        quantify_slide(ArraySlide(np.ones((3, 90, 70), np.uint16), STAINS, 0.5, "s1"),
                       ArrayMask(np.zeros((90, 71), np.int32), "s1"))


def test_feature_checks_flag_implausible_areas_and_nan() -> None:
    image, labels = shapes_field()
    frame = quantify_slide(ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1"))
    assert all(ok for ok, _ in feature_checks(frame).values())
    tiny = feature_checks(frame, min_area_um2=500.0)["plausible_areas"]
    assert tiny[0] is False and tiny[1]["median_area_um2"] < 500
    nan = frame.with_columns(pl.lit(float("nan"), pl.Float32).alias("mean_cd3d"))
    assert feature_checks(nan)["no_nan_intensities"] == (False, {"rows_with_nan": frame.height})
