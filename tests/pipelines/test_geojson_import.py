"""QuPath GeoJSON detections -> label raster: exact pixels for drawn shapes, and a round trip
through the project's own QuPath export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.errors import SlideInputError
from pipelines.inference import slide_outlines
from pipelines.quantify import quantify_slide
from pipelines.segment.base import ArrayMask, ArraySlide
from pipelines.segment.geojson import GeoJSONLabels
from pipelines.segment.he import ArrayRGBSlide, segment_he_slide
from pipelines.segment.quality import match_score
from storage.qupath_geojson import (
    GeoJSONError,
    NucleusObject,
    read_detection_polygons,
    write_qupath_geojson,
)
from tests.he_fixtures import synthetic_he


def _square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def test_polygons_holes_multipolygons_and_cell_nuclei_rasterise_exactly(tmp_path):
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            _square(2, 3, 8, 7), _square(4, 4, 6, 6)]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [_square(10, 0, 12, 2)], [_square(14, 0, 15, 1)]]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(0, 0, 20, 20)]},
         "nucleusGeometry": {"type": "Polygon", "coordinates": [_square(16, 10, 19, 13)]},
         "properties": {"objectType": "cell"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}},
    ]
    path = tmp_path / "cells.geojson"
    path.write_text(json.dumps(features))  # QuPath's "export as list of features" form
    labels = GeoJSONLabels(read_detection_polygons(path), (16, 20), str(path))
    expected = np.zeros((16, 20), np.int32)
    expected[3:7, 2:8] = 1
    expected[4:6, 4:6] = 0  # the hole
    expected[0:2, 10:12] = 2
    expected[0:1, 14:15] = 2
    expected[10:13, 16:19] = 3  # the nucleus, not the cell outline
    assert np.array_equal(labels.read(0, 0, 16, 20), expected)
    assert np.array_equal(labels.read(2, 5, 12, 17), expected[2:12, 5:17])  # any window


def test_the_projects_own_export_imports_back_to_its_mask(tmp_path):
    rgb, truth = synthetic_he(200, 240, 0.5, 25, seed=7)
    features = quantify_slide(ArraySlide(rgb[None, ..., 0], ["R"], 0.5, "S1"),
                              ArrayMask(truth, "S1"))
    rows = list(slide_outlines(ArrayMask(truth, "S1").read, 200, 240, features))
    cy, cx = features["centroid_y_px"].to_list(), features["centroid_x_px"].to_list()
    path = tmp_path / "S1.geojson"
    write_qupath_geojson(path, (NucleusObject(i + 1, "epithelial", (255, 0, 0), None, ring,
                                              (cx[i] + 0.5, cy[i] + 0.5)) for i, ring in rows))
    source = GeoJSONLabels(read_detection_polygons(path), (200, 240), str(path))
    run = segment_he_slide(ArrayRGBSlide(rgb, 0.5, "S1"), source, tile_px=64)
    imported = np.zeros_like(truth)
    for tile, block in run:
        imported[tile.y0 : tile.y1, tile.x0 : tile.x1] = block
    score = match_score(truth, imported, 0.8)
    assert run.n_nuclei == 25 and score.true_positives == 25 and score.mean_matched_iou > 0.9


def test_files_without_outlines_are_refused(tmp_path):
    points = tmp_path / "points.geojson"
    points.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}]}))
    with pytest.raises(SlideInputError, match="no nucleus outline"):
        GeoJSONLabels(read_detection_polygons(points), (8, 8), str(points))
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(GeoJSONError, match="not readable GeoJSON"):
        read_detection_polygons(tmp_path / "bad.geojson")
    with pytest.raises(GeoJSONError, match="No GeoJSON file"):
        read_detection_polygons(tmp_path / "absent.geojson")
