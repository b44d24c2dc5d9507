"""Nucleus outlines (QuPath GeoJSON detections) as a label raster, read window by window.

`GeoJSONLabels` is a `LabelSource` (pipelines/segment/base.py), so the `import` backend checks
and writes it like an imported mask: object k of the file becomes label k + 1. A pixel belongs
to an outline when its centre lies inside the outer ring and outside every hole; QuPath puts
pixel edges on integer coordinates, so pixel (row, col) has its centre at (col + 0.5, row + 0.5)
and an outline exported by this project (storage/qupath_geojson.py) rasterises back to its
mask. Where outlines overlap, the later object wins. Only the outlines whose bounding boxes
meet a window are drawn for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.draw import polygon as fill_polygon

from pipelines.errors import SlideInputError

Polygon = list[np.ndarray]  # [outer ring, *holes], (n, 2) x, y in slide pixels


class GeoJSONLabels:
    """int32 labels of outlines on a slide grid of `shape` (height, width)."""

    name = "import"
    dtype = np.dtype(np.int32)

    def __init__(self, objects: Sequence[Sequence[Polygon]], shape: tuple[int, int],
                 description: str) -> None:
        self.objects = [list(o) for o in objects]
        self.shape = (int(shape[0]), int(shape[1]))
        self.description = description
        if not self.objects:
            raise SlideInputError(
                f"{description} holds no nucleus outline (Polygon or MultiPolygon); export "
                "the detections (not only points) from QuPath."
            )
        boxes = np.array([_box(o) for o in self.objects])  # x0, y0, x1, y1 per object
        self._x0, self._y0, self._x1, self._y1 = boxes.T

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        out = np.zeros((y1 - y0, x1 - x0), np.int32)
        # pixel centres of the window span [x0 + 0.5, x1 - 0.5] in slide coordinates
        hit = np.flatnonzero((self._x1 >= x0) & (self._x0 <= x1) & (self._y1 >= y0)
                             & (self._y0 <= y1))
        for k in hit:
            for rings in self.objects[k]:
                inside = _fill(rings[0], y0, x0, out.shape)
                for hole in rings[1:]:
                    inside &= ~_fill(hole, y0, x0, out.shape)
                out[inside] = k + 1
        return out


def _box(polygons: Sequence[Polygon]) -> tuple[float, float, float, float]:
    points = np.concatenate([p[0] for p in polygons])
    return (float(points[:, 0].min()), float(points[:, 1].min()),
            float(points[:, 0].max()), float(points[:, 1].max()))


def _fill(ring: np.ndarray, y0: int, x0: int, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a window (origin y0, x0) whose centres lie inside `ring`."""
    mask = np.zeros(shape, bool)
    rows, cols = fill_polygon(ring[:, 1] - 0.5 - y0, ring[:, 0] - 0.5 - x0, shape)
    mask[rows, cols] = True
    return mask
