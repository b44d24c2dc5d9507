"""Where every patch comes from and goes to: a slide's nucleus table checked against the
slide, each nucleus placed on the patch grid, rows in the patch store's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.errors import SlideInputError
from pipelines.patches.params import DEFAULT_PATCH_PARAMS, PatchParams
from pipelines.patches.resample import ResampleGrid


@dataclass(frozen=True)
class PatchPlan:
    """Where every patch comes from and goes to; arrays are in store row order."""

    slide_id: str
    grid: ResampleGrid
    src_height_px: int
    src_width_px: int
    dst_height_px: int
    dst_width_px: int
    tile_px: int
    nucleus_id: np.ndarray
    class_index: np.ndarray
    edge: np.ndarray
    centre_y: np.ndarray  # patch-grid pixel of the centre
    centre_x: np.ndarray

    @property
    def n_patches(self) -> int:
        return len(self.nucleus_id)

    @property
    def tile_dst_px(self) -> int:
        return self.tile_px * self.grid.q // self.grid.p

    def tile_of(self) -> tuple[np.ndarray, np.ndarray]:
        """(tile row, tile column) of each patch centre, on the tile grid of the slide."""
        td = self.tile_dst_px
        n_rows = -(-self.src_height_px // self.tile_px)
        n_cols = -(-self.src_width_px // self.tile_px)
        return (
            np.minimum(self.centre_y // td, n_rows - 1),
            np.minimum(self.centre_x // td, n_cols - 1),
        )


def plan_patches(
    slide_id: str,
    nucleus_id: np.ndarray,
    class_index: np.ndarray,
    centroid_y_px: np.ndarray,
    centroid_x_px: np.ndarray,
    height_px: int,
    width_px: int,
    mpp: float,
    params: PatchParams = DEFAULT_PATCH_PARAMS,
) -> PatchPlan:
    """Check a slide's nucleus table against the slide and place every patch.

    Rows are sorted by (class_index, nucleus_id), the patch store's order. Raises
    SlideInputError for a table that cannot belong to the slide (centroids outside it,
    duplicate or missing values).
    """
    nucleus_id = np.asarray(nucleus_id, np.int64)
    class_index = np.asarray(class_index, np.int16)
    cy = np.asarray(centroid_y_px, np.float64)
    cx = np.asarray(centroid_x_px, np.float64)
    n = len(nucleus_id)
    if not (len(class_index) == len(cy) == len(cx) == n):
        raise SlideInputError(f"Slide {slide_id!r}: nucleus table columns differ in length.")
    if len(np.unique(nucleus_id)) != n:
        raise SlideInputError(f"Slide {slide_id!r}: the nucleus table repeats a nucleus_id.")
    bad = ~(np.isfinite(cy) & np.isfinite(cx) & (cy >= -0.5) & (cx >= -0.5)
            & (cy < height_px - 0.5) & (cx < width_px - 0.5))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SlideInputError(
            f"Slide {slide_id!r}: {int(bad.sum())} of {n} nucleus centroids lie outside the "
            f"slide ({height_px} x {width_px} px), e.g. nucleus_id {int(nucleus_id[i])} at "
            f"(y={cy[i]:.1f}, x={cx[i]:.1f}) px. The nucleus table belongs to another slide or "
            "pixel size; re-run nucleus_features for this slide."
        )
    grid = ResampleGrid.between(mpp, params.mpp)
    dst_h, dst_w = grid.dst_size(height_px), grid.dst_size(width_px)
    order = np.lexsort((nucleus_id, class_index))
    centre_y = np.clip(grid.to_dst(cy[order]), 0, dst_h - 1)
    centre_x = np.clip(grid.to_dst(cx[order]), 0, dst_w - 1)
    half = params.patch_px // 2
    edge = (
        (centre_y - half < 0) | (centre_x - half < 0)
        | (centre_y + half >= dst_h) | (centre_x + half >= dst_w)
    )
    return PatchPlan(
        slide_id=slide_id, grid=grid, src_height_px=height_px, src_width_px=width_px,
        dst_height_px=dst_h, dst_width_px=dst_w, tile_px=grid.align(params.tile_px),
        nucleus_id=nucleus_id[order], class_index=class_index[order], edge=edge,
        centre_y=centre_y, centre_x=centre_x,
    )


def patch_table(labels: pl.DataFrame, features: pl.DataFrame, slide_id: str) -> pl.DataFrame:
    """The labelled nuclei of one slide with their centroids: nucleus_id, class_index,
    centroid_y_px, centroid_x_px (class_index >= 0 only).

    Raises SlideInputError when a table belongs to another slide or a labelled nucleus has no
    features row.
    """
    for name, frame in (("nucleus_labels", labels), ("nucleus_features", features)):
        if "slide_id" in frame.columns:
            other = frame.filter(pl.col("slide_id") != slide_id)
            if other.height:
                raise SlideInputError(
                    f"The {name} partition of slide {slide_id!r} holds {other.height} rows of "
                    f"slide {other['slide_id'][0]!r}; re-materialise {name} for {slide_id!r}."
                )
    kept = labels.filter(pl.col("class_index") >= 0).select("nucleus_id", "class_index")
    table = kept.join(
        features.select("nucleus_id", "centroid_y_px", "centroid_x_px"),
        on="nucleus_id", how="left",
    )
    missing = table.filter(pl.col("centroid_y_px").is_null())
    if missing.height:
        raise SlideInputError(
            f"Slide {slide_id!r}: {missing.height} labelled nuclei have no nucleus_features row "
            f"(e.g. nucleus_id {missing['nucleus_id'][0]}); labels and features come from "
            "different segmentations. Re-materialise nucleus_features and nucleus_labels."
        )
    return table
