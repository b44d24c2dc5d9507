"""An imported binary mask is not taken as one nucleus (issue 16, item 4)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from pipelines.errors import SlideInputError
from pipelines.segment import SegmentParams, segment_slide
from pipelines.segment.base import ArraySlide
from pipelines.segment.quality import match_score
from storage.mask_import import open_imported_mask


def _truth(shape=(300, 260)) -> np.ndarray:
    """Five separate nuclei (24 x 18 px at 0.32 µm/px, ~44 µm² each), two across tile borders."""
    labels = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate([(20, 30), (128, 128), (250, 240), (150, 20), (200, 130)], 1):
        labels[max(0, y - 12) : y + 12, max(0, x - 9) : x + 9] = k
    return labels


def _run(path, shape, binary_mask="refuse", mpp=0.32):
    slide = ArraySlide(np.zeros((1, *shape), np.uint16), ["DAPI"], mpp, "P01_S1")
    params = SegmentParams(tile_px=128, binary_mask=binary_mask)
    run = segment_slide(slide, open_imported_mask(path), params)
    out = np.zeros(shape, np.int32)
    for tile, block in run:
        out[tile.y0 : tile.y1, tile.x0 : tile.x1] = block
    return out, run


@pytest.mark.parametrize("value", [1, 255])
def test_binary_mask_is_refused(tmp_path, value):
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, ((_truth() > 0) * value).astype(np.uint8))
    with pytest.raises(SlideInputError) as info:
        _run(path, (300, 260), mpp=1.0)  # 2160 µm² of foreground: more than one nucleus
    message = str(info.value)
    assert "mask.tif" in message and "'P01_S1'" in message
    assert f"has one label value ({value}) covering 2160 px (2160 µm², 3% of the slide)" in message
    assert "it looks like a binary mask" in message
    assert "label a binary mask first" in message.lower()
    assert "binary_mask: connected_components" in message


def test_one_label_covering_most_of_the_slide_is_refused(tmp_path):
    labels = _truth()
    labels[labels == 0] = 9  # background written as a label
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, labels.astype(np.uint16))
    with pytest.raises(SlideInputError) as info:
        _run(path, labels.shape)
    message = str(info.value)
    assert "has label 9 covering 97% of the slide" in message
    assert "label a binary mask first" in message.lower()


def test_connected_components_option_labels_a_binary_mask(tmp_path):
    truth = _truth()
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, (truth > 0).astype(np.uint8))
    with pytest.raises(SlideInputError):
        _run(path, truth.shape, mpp=1.0)
    out, run = _run(path, truth.shape, binary_mask="connected_components", mpp=1.0)
    assert run.n_nuclei == 5
    assert run.details["connected_components"] is True
    assert match_score(truth, out).f1 == 1.0
    assert sorted(np.unique(out).tolist()) == [0, 1, 2, 3, 4, 5]


def test_a_real_instance_mask_is_kept_as_it_is_with_either_option(tmp_path):
    truth = _truth()
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, truth.astype(np.uint16))
    for option in ("refuse", "connected_components"):
        out, run = _run(path, truth.shape, binary_mask=option)
        np.testing.assert_array_equal(out, truth)
        assert run.n_nuclei == 5 and run.details["connected_components"] is False


def test_one_small_nucleus_labelled_1_is_not_a_binary_mask(tmp_path):
    truth = (_truth() == 1).astype(np.uint8)
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, truth)
    out, run = _run(path, truth.shape, mpp=1.0)  # 432 µm²: one nucleus
    np.testing.assert_array_equal(out, truth)
    assert run.n_nuclei == 1
