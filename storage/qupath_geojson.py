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
