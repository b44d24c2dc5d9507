"""The import backend: users' own masks from TIFF, OME-TIFF and Zarr, checked and made int32."""

import numpy as np
import pytest
import tifffile
import zarr

from pipelines.errors import SlideInputError
from pipelines.segment import LabelSource, SegmentParams, segment_slide
from pipelines.segment.base import ArraySlide
from pipelines.segment.quality import match_score
from storage.mask_import import MaskImportError, open_imported_mask


def truth_mask(shape=(300, 260)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate([(20, 30), (100, 100), (250, 240), (150, 20), (200, 130)], 1):
        labels[max(0, y - 12) : y + 12, max(0, x - 9) : x + 9] = k
    return labels


def slide_for(labels: np.ndarray) -> ArraySlide:
    return ArraySlide(np.zeros((1, *labels.shape), np.uint16), ["DAPI"], 0.32, "s1")


def imported(path, labels, plane=None, tile_px=128):
    source = open_imported_mask(path, plane)
    assert isinstance(source, LabelSource)
    run = segment_slide(slide_for(labels), source, SegmentParams(tile_px=tile_px))
    out = np.zeros(labels.shape, np.int32)
    for tile, block in run:
        assert block.dtype == np.int32
        out[tile.y0 : tile.y1, tile.x0 : tile.x1] = block
    return out, run


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint32, np.int64])
def test_tiff_mask_round_trips_with_f1_one(tmp_path, dtype) -> None:
    labels = truth_mask()
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, labels.astype(dtype), tile=(64, 64), compression="zlib")
    out, run = imported(path, labels)
    np.testing.assert_array_equal(out, labels)
    assert run.n_nuclei == 5 and match_score(labels, out).f1 == 1.0


def test_ome_tiff_with_two_planes_needs_a_plane(tmp_path) -> None:
    labels = truth_mask()
    path = tmp_path / "mesmer.ome.tif"
    tifffile.imwrite(path, np.stack([labels * 0 + 7 * (labels > 0), labels]).astype(np.uint32),
                     ome=True, metadata={"axes": "CYX"})
    with pytest.raises(MaskImportError, match="plane"):
        open_imported_mask(path)
    out, _ = imported(path, labels, plane=1)
    np.testing.assert_array_equal(out, labels)


def test_zarr_array_and_our_own_mask_store(tmp_path) -> None:
    labels = truth_mask()
    zarr.create_array(str(tmp_path / "m.zarr"), data=labels.astype(np.uint16), chunks=(100, 100))
    out, _ = imported(tmp_path / "m.zarr", labels)
    np.testing.assert_array_equal(out, labels)


def test_labels_beyond_int32_are_renumbered(tmp_path) -> None:
    labels = truth_mask()
    big = np.where(labels > 0, labels.astype(np.uint64) + 2**40, 0).astype(np.uint64)
    zarr.create_array(str(tmp_path / "big.zarr"), data=big, chunks=(64, 64))
    out, run = imported(tmp_path / "big.zarr", labels, tile_px=64)
    np.testing.assert_array_equal(out, labels)  # label order kept, so 1..5 again
    assert run.details["relabelled"] is True


def test_wrong_shape_is_refused_naming_both_shapes(tmp_path) -> None:
    labels = truth_mask()
    tifffile.imwrite(tmp_path / "m.tif", labels[:-1])
    with pytest.raises(SlideInputError, match=r"299x260.*'s1' is 300x260"):
        imported(tmp_path / "m.tif", labels)


@pytest.mark.parametrize("dtype", [np.float32, np.bool_])
def test_non_integer_masks_are_refused(tmp_path, dtype) -> None:
    labels = truth_mask()
    tifffile.imwrite(tmp_path / "m.tif", labels.astype(dtype))
    with pytest.raises(SlideInputError, match="integer labels"):
        imported(tmp_path / "m.tif", labels)


def test_negative_labels_are_refused(tmp_path) -> None:
    labels = truth_mask()
    labels[0, 0] = -3
    tifffile.imwrite(tmp_path / "m.tif", labels.astype(np.int16))
    with pytest.raises(SlideInputError, match="negative"):
        imported(tmp_path / "m.tif", labels)


def test_missing_file_says_where_it_looked(tmp_path) -> None:
    with pytest.raises(MaskImportError, match="No mask at"):
        open_imported_mask(tmp_path / "nope.tif")
