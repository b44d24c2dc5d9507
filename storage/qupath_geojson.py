"""QuPath-compatible GeoJSON: one detection per nucleus with its class name and colour.

QuPath (0.3 and later) opens the file with File > Import objects, or by dragging it onto a slide.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.atomic import atomic_path
from storage.errors import StorageError


@dataclass(frozen=True)
class NucleusObject:
    nucleus_id: int
    cell_type: str
    colour_rgb: tuple[int, int, int]
    probability: float | None
    outline_xy: np.ndarray | None  # closed ring in slide pixels; None -> point at the centroid
    centroid_xy: tuple[float, float]


def _feature(obj: NucleusObject) -> dict:
    if obj.outline_xy is not None and len(obj.outline_xy) >= 4:
        geometry = {"type": "Polygon", "coordinates": [np.round(obj.outline_xy, 2).tolist()]}
    else:
        geometry = {"type": "Point", "coordinates": [round(c, 2) for c in obj.centroid_xy]}
    properties: dict = {
        "objectType": "detection",
        "classification": {"name": obj.cell_type, "color": list(obj.colour_rgb)},
        "isLocked": False,
        "nucleus_id": str(obj.nucleus_id),
    }
    if obj.probability is not None:
        properties["measurements"] = {"probability": round(float(obj.probability), 4)}
    return {"type": "Feature", "id": str(obj.nucleus_id), "geometry": geometry,
            "properties": properties}


def write_qupath_geojson(path: Path, objects: Iterable[NucleusObject]) -> int:
    """Stream the FeatureCollection to `path` atomically; returns the number of nuclei written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for obj in objects:
            if count:
                fh.write(",\n")
            fh.write(json.dumps(_feature(obj), separators=(",", ":")))
            count += 1
        fh.write("\n]}\n")
    return count


class GeoJSONError(StorageError):
    """A GeoJSON file that holds no usable nucleus outlines."""


def read_detection_polygons(path: Path) -> list[list[list[np.ndarray]]]:
    """Nucleus outlines of a QuPath (or any) GeoJSON export, one entry per object: a list of
    polygons, each [outer ring, *holes] as (n, 2) float64 arrays of (x, y) slide pixels.

    A FeatureCollection, a bare list of Features or one Feature; a cell object's
    `nucleusGeometry` is used instead of its cell outline; Points and LineStrings (no area)
    are left out. The file is read whole (it holds outlines, not pixels).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GeoJSONError(f"No GeoJSON file at {path}: export the detections from QuPath "
                           "(File > Export objects as GeoJSON) to that path.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GeoJSONError(f"{path}: not readable GeoJSON ({type(exc).__name__}: {exc}); "
                           "export it again.") from exc
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features") or []
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):
        features = data
    else:
        raise GeoJSONError(f"{path}: expected a FeatureCollection or a list of Features.")
    objects = []
    for number, feature in enumerate(features):
        if not isinstance(feature, dict):
            raise GeoJSONError(f"{path}: feature {number} is not a GeoJSON object.")
        geometry = feature.get("nucleusGeometry") or feature.get("geometry") or {}
        try:
            polygons = _polygons(geometry)
        except (TypeError, ValueError, IndexError) as exc:
            raise GeoJSONError(f"{path}: feature {number} has malformed coordinates ({exc}).") \
                from exc
        if polygons:
            objects.append(polygons)
    return objects


def _polygons(geometry: dict) -> list[list[np.ndarray]]:
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        parts = [coordinates]
    elif kind == "MultiPolygon":
        parts = coordinates
    elif kind == "GeometryCollection":
        return [p for g in geometry.get("geometries") or [] for p in _polygons(g)]
    else:
        return []
    out = []
    for rings in parts:
        arrays = [np.asarray(ring, dtype=np.float64)[:, :2] for ring in rings]
        if arrays and len(arrays[0]) >= 3:
            out.append(arrays)
    return out
