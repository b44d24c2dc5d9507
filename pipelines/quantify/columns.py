"""The nucleus_features columns: geometry (px and µm), the mean of every stain, and the
frame built from merged per-nucleus sums (centroid, axes and eccentricity from the moments).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from pipelines.ids import nucleus_ids
from pipelines.quantify.tile import _Partial
from pipelines.stains import stain_key

GEOMETRY_SCHEMA: dict[str, pl.DataType] = {
    "nucleus_id": pl.Int64,
    "slide_id": pl.Utf8,
    "label": pl.Int32,
    "centroid_y_px": pl.Float64,
    "centroid_x_px": pl.Float64,
    "centroid_y_um": pl.Float64,
    "centroid_x_um": pl.Float64,
    "bbox_y0_px": pl.Int32,
    "bbox_x0_px": pl.Int32,
    "bbox_y1_px": pl.Int32,
    "bbox_x1_px": pl.Int32,
    "area_px": pl.Int64,
    "area_um2": pl.Float64,
    "perimeter_px": pl.Float64,
    "eccentricity": pl.Float64,
    "solidity": pl.Float64,
    "major_axis_px": pl.Float64,
    "minor_axis_px": pl.Float64,
}


def feature_schema(stains: Sequence[str]) -> dict[str, pl.DataType]:
    """The nucleus_features columns for a slide with these (canonical) stains, in order."""
    return {**GEOMETRY_SCHEMA, **{f"mean_{stain_key(s)}": pl.Float32 for s in stains}}


def empty_features(stains: Sequence[str]) -> pl.DataFrame:
    """A valid zero-row nucleus_features frame (a slide without nuclei)."""
    return pl.DataFrame(schema=feature_schema(stains))


def _features(
    part: _Partial, slide_id: str, mpp: float, stains: Sequence[str],
    hull_px: np.ndarray | None,
) -> pl.DataFrame:
    """Feature frame of merged nuclei sorted by label; hull_px aligned with part.label."""
    p = part
    count = p.count
    sy, sx, syy, sxx, sxy = (p.moments[:, k] / count for k in range(5))
    cy, cx = sy, sx
    mu_yy = np.maximum(syy - cy * cy, 0.0)
    mu_xx = np.maximum(sxx - cx * cx, 0.0)
    mu_xy = sxy - cy * cx
    half_trace = (mu_yy + mu_xx) / 2
    root = np.sqrt(((mu_yy - mu_xx) / 2) ** 2 + mu_xy * mu_xy)
    l1, l2 = half_trace + root, np.maximum(half_trace - root, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eccentricity = np.where(l1 > 0, np.sqrt(np.clip(1 - l2 / l1, 0, 1)), 0.0)
        means = (p.sums / count[:, None]).astype(np.float32)
    if hull_px is not None:
        solidity = count / hull_px
        perimeter = p.perimeter
    else:
        solidity = perimeter = np.full(count.size, np.nan)
    columns = {
        "nucleus_id": nucleus_ids(slide_id, p.label),
        "slide_id": np.full(count.size, slide_id, dtype=object),
        "label": p.label.astype(np.int32),
        "centroid_y_px": cy,
        "centroid_x_px": cx,
        "centroid_y_um": cy * mpp,
        "centroid_x_um": cx * mpp,
        "bbox_y0_px": p.bbox[:, 0].astype(np.int32),
        "bbox_x0_px": p.bbox[:, 1].astype(np.int32),
        "bbox_y1_px": (p.bbox[:, 2] + 1).astype(np.int32),
        "bbox_x1_px": (p.bbox[:, 3] + 1).astype(np.int32),
        "area_px": count.astype(np.int64),
        "area_um2": count * mpp * mpp,
        "perimeter_px": perimeter,
        "eccentricity": eccentricity,
        "solidity": solidity,
        "major_axis_px": 4 * np.sqrt(l1),
        "minor_axis_px": 4 * np.sqrt(l2),
    }
    for k, stain in enumerate(stains):
        columns[f"mean_{stain_key(stain)}"] = means[:, k]
    return pl.DataFrame(columns, schema=feature_schema(stains))
