"""The inference map: the slide's H&E with a dot per nucleus in its class's colour."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipelines.cell_types import CELL_TYPES, CLASS_COLOURS
from pipelines.inference_map import (
    MAP_MAX_PX,
    MARGIN_PX,
    TITLE_H_PX,
    dot_radius_px,
    inference_map_png,
    overview_rgb,
)


def _read(rgb):
    return lambda y0, x0, y1, x1: rgb[y0:y1, x0:x1]


def test_overview_reads_tiles_and_subsamples() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (530, 310, 3), dtype=np.uint8)
    small, step = overview_rgb(_read(rgb), 530, 310, max_px=100, tile_px=64)
    assert step == 6
    np.testing.assert_array_equal(small, rgb[::6, ::6])
    same, one = overview_rgb(_read(rgb), 530, 310, max_px=600)
    assert one == 1 and np.array_equal(same, rgb)


def test_dots_sit_at_centroids_in_class_colours_over_the_tissue() -> None:
    mpp = 0.5
    background = np.full((300, 450, 3), (200, 150, 190), np.uint8)  # 150 x 225 µm
    cy_um = np.array([20.0, 75.0, 140.0])
    cx_um = np.array([30.0, 200.0, 110.0])
    classes = np.array([CELL_TYPES.index("goblet"), CELL_TYPES.index("stromal"),
                        CELL_TYPES.index("helper_t")])
    png = inference_map_png("S1", cy_um, cx_um, classes, background, mpp, "fold 2")
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    scale = MAP_MAX_PX / (450 * mpp)  # the longer side fills the map
    map_h, map_w = round(300 * mpp * scale), MAP_MAX_PX
    assert image.shape[1] > MARGIN_PX + map_w  # the legend sits to the right
    for y, x, k in zip(cy_um, cx_um, classes, strict=True):
        at = image[round(TITLE_H_PX + y * scale), round(MARGIN_PX + x * scale)]
        assert tuple(at) == tuple(CLASS_COLOURS[CELL_TYPES[k]])
    # away from the dots the tissue shows through, resized but not recoloured
    assert tuple(image[TITLE_H_PX + map_h // 2, MARGIN_PX + 5]) == (200, 150, 190)
    assert tuple(image[TITLE_H_PX + map_h + 2, MARGIN_PX + 5]) == (255, 255, 255)


def test_empty_slide_and_dot_size() -> None:
    png = inference_map_png("S0", np.zeros(0), np.zeros(0), np.zeros(0, int), None, 0.5, "fold 0")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > MAP_MAX_PX // 4
    assert dot_radius_px(10) == 3 and dot_radius_px(2_000) == 3
    assert dot_radius_px(10_000) == 1 and dot_radius_px(1_000_000) == 1
