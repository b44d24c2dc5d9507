"""Nucleus outlines traced tile by tile: each nucleus once, the same ring as tracing the whole
mask at once, around its centroid; a point (None) when its box does not fit the window."""

from __future__ import annotations

import numpy as np
import polars as pl
from skimage.measure import points_in_poly, regionprops

from pipelines.inference import OutlineTiling, drop_collinear, slide_outlines
from pipelines.outlines import OutlineParams, trace_outlines
from tests.vhe_phantom import make_phantom


def _nuclei(labels: np.ndarray) -> pl.DataFrame:
    rows = []
    for p in regionprops(labels):
        y0, x0, y1, x1 = p.bbox
        rows.append((p.label, *p.centroid, y0, x0, y1, x1))
    return pl.DataFrame(rows, orient="row", schema=[
        "label", "centroid_y_px", "centroid_x_px",
        "bbox_y0_px", "bbox_x0_px", "bbox_y1_px", "bbox_x1_px"])


def _labels() -> np.ndarray:
    labels = make_phantom(150, 180, seed=7).labels.copy()
    labels[60:100, 100:104] = labels.max() + 1  # a long thin nucleus across a tile border
    return labels


def test_tiles_give_the_whole_mask_rings_once_each() -> None:
    labels = _labels()
    nuclei = _nuclei(labels)
    h, w = labels.shape
    read = lambda y0, x0, y1, x1: labels[y0:y1, x0:x1]  # noqa: E731
    got = list(slide_outlines(read, h, w, nuclei, OutlineTiling(tile_px=32)))
    rows = [i for i, _ in got]
    assert sorted(rows) == list(range(nuclei.height))  # every nucleus exactly once
    boxes = {r["label"]: (r["bbox_y0_px"], r["bbox_x0_px"], r["bbox_y1_px"], r["bbox_x1_px"])
             for r in nuclei.iter_rows(named=True)}
    whole = trace_outlines(labels, 0, 0, boxes, OutlineParams(tolerance_px=0))
    label = nuclei["label"].to_list()
    cy, cx = nuclei["centroid_y_px"].to_list(), nuclei["centroid_x_px"].to_list()
    for i, ring in got:
        assert ring is not None
        np.testing.assert_array_equal(ring, drop_collinear(whole[label[i]]))
        assert np.array_equal(ring[0], ring[-1])
        # (x, y) with pixel edges on integers: the centroid's pixel centre is (cx + .5, cy + .5)
        assert points_in_poly([[cx[i] + 0.5, cy[i] + 0.5]], ring)[0]
        y0, x0, y1, x1 = boxes[label[i]]
        assert ring[:, 0].min() >= x0 and ring[:, 0].max() <= x1
        assert ring[:, 1].min() >= y0 and ring[:, 1].max() <= y1


def test_boxes_that_leave_the_window_fall_back_to_points() -> None:
    labels = _labels()
    nuclei = _nuclei(labels)
    h, w = labels.shape
    read = lambda y0, x0, y1, x1: labels[y0:y1, x0:x1]  # noqa: E731
    got = dict(slide_outlines(read, h, w, nuclei, OutlineTiling(tile_px=32, max_halo_px=0)))
    tile = 32
    cy = np.floor(nuclei["centroid_y_px"].to_numpy()).astype(int)
    cx = np.floor(nuclei["centroid_x_px"].to_numpy()).astype(int)
    ty, tx = cy // tile * tile, cx // tile * tile
    inside = ((nuclei["bbox_y0_px"].to_numpy() >= ty) & (nuclei["bbox_x0_px"].to_numpy() >= tx)
              & (nuclei["bbox_y1_px"].to_numpy() <= np.minimum(ty + tile, h))
              & (nuclei["bbox_x1_px"].to_numpy() <= np.minimum(tx + tile, w)))
    assert 0 < (~inside).sum() < len(inside)
    for i in range(nuclei.height):
        assert (got[i] is not None) == bool(inside[i])


def test_no_nuclei_no_outlines() -> None:
    empty = _nuclei(np.zeros((10, 10), np.int32))
    assert list(slide_outlines(lambda *a: None, 10, 10, empty)) == []


def _area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])))


def test_dropping_collinear_vertices_keeps_the_polygon() -> None:
    labels = _labels()
    nuclei = _nuclei(labels)
    boxes = {r["label"]: (r["bbox_y0_px"], r["bbox_x0_px"], r["bbox_y1_px"], r["bbox_x1_px"])
             for r in nuclei.iter_rows(named=True)}
    rings = trace_outlines(labels, 0, 0, boxes, OutlineParams(tolerance_px=0))
    grid = np.stack(np.meshgrid(np.arange(0, 180, 0.25), np.arange(0, 150, 0.25)), -1)
    n_before = n_after = 0
    for ring in list(rings.values())[:12]:
        lean = drop_collinear(ring)
        n_before, n_after = n_before + len(ring), n_after + len(lean)
        assert np.array_equal(lean[0], lean[-1])
        assert set(map(tuple, lean)) <= set(map(tuple, ring))
        assert _area(lean) == _area(ring)
        x0, y0 = ring.min(axis=0)
        x1, y1 = ring.max(axis=0)
        near = grid[int(y0 * 4) : int(y1 * 4) + 1, int(x0 * 4) : int(x1 * 4) + 1].reshape(-1, 2)
        near = near + 0.125  # off the vertices' lattice: never exactly on an edge
        np.testing.assert_array_equal(points_in_poly(near, lean), points_in_poly(near, ring))
    assert n_after < n_before / 2
    square = np.array([[0, 0], [1, 0], [2, 0], [2, 2], [0, 2], [0, 0]], float)
    np.testing.assert_array_equal(drop_collinear(square)[:-1], square[[0, 2, 3, 4]])
