import json
from pathlib import Path

import numpy as np

from storage.qupath_geojson import NucleusObject, write_qupath_geojson


def test_geojson_has_one_detection_per_nucleus_with_class_and_colour(tmp_path: Path) -> None:
    ring = np.array([[0, 0], [4, 0], [4, 3], [0, 3], [0, 0]], float)
    objects = [
        NucleusObject(11, "helper_t", (188, 189, 34), 0.91, ring, (2.0, 1.5)),
        NucleusObject(12, "goblet", (31, 119, 180), None, None, (10.0, 20.0)),
    ]
    path = tmp_path / "slide.geojson"
    assert write_qupath_geojson(path, objects) == 2
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection"
    first, second = doc["features"]
    assert first["geometry"]["type"] == "Polygon"
    assert first["geometry"]["coordinates"][0][2] == [4, 3]
    assert first["properties"]["objectType"] == "detection"
    assert first["properties"]["classification"] == {"name": "helper_t", "color": [188, 189, 34]}
    assert first["properties"]["measurements"]["probability"] == 0.91
    assert second["geometry"] == {"type": "Point", "coordinates": [10.0, 20.0]}
    assert [p.name for p in tmp_path.iterdir()] == ["slide.geojson"]


def test_empty_slide_gives_a_valid_empty_collection(tmp_path: Path) -> None:
    path = tmp_path / "empty.geojson"
    assert write_qupath_geojson(path, []) == 0
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": []}
