"""The per-nucleus table as AnnData users expect it: one row per nucleus, one column per stain.

`nucleus_table` joins one slide's features, labels, thresholds, manifest row and (where the
slide was inferred) predictions into a `NucleusTable`; `concat_tables` stacks slides into the
cohort table. Everything stays numpy/polars: storage/anndata_file.py, which defines the
table's columns, turns it into `.h5ad`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from pipelines.cell_types import CELL_TYPES
from pipelines.errors import SlideInputError
from pipelines.thresholds import MEAN_PREFIX, feature_stains
from storage.anndata_file import OBS_SCHEMA, THRESHOLD_COLUMNS, NucleusTable

MANIFEST_FIELDS: tuple[str, ...] = ("patient_id", "site", "condition")


def nucleus_table(
    slide_id: str,
    features: pl.DataFrame,
    labels: pl.DataFrame,
    thresholds: pl.DataFrame,
    manifest_row: Mapping[str, object] | None,
    inference: pl.DataFrame | None = None,
    cell_types: Sequence[str] = CELL_TYPES,
) -> NucleusTable:
    """One slide's table, rows in the features' order; labels must cover every nucleus.
    `cell_types` orders the class categories (another panel's rule file has its own)."""
    if manifest_row is None:
        raise SlideInputError(f"Slide {slide_id!r} is not in the slide manifest: materialise "
                              "slide_manifest (or add the slide to the manifest CSV) first.")
    stains = feature_stains(features)  # stain_key -> canonical stain
    keys = list(stains)
    ids = features.select("nucleus_id", "label")
    obs = ids.join(labels.select("nucleus_id", "cell_type", "excluded_at_step",
                                 "threshold_version"), on="nucleus_id", how="left",
                   maintain_order="left")
    missing = labels.height != features.height or obs["threshold_version"].null_count()
    if missing:
        raise SlideInputError(
            f"Slide {slide_id!r}: nucleus_labels has {labels.height} rows for "
            f"{features.height} nuclei in nucleus_features; re-materialise nucleus_labels.")
    if inference is not None:
        predicted = inference.select("nucleus_id", "predicted_cell_type",
                                     pl.col("probability").alias("predicted_probability"))
        obs = obs.join(predicted, on="nucleus_id", how="left", maintain_order="left")
    obs = obs.with_columns(
        slide_id=pl.lit(slide_id),
        **{f: pl.lit(manifest_row.get(f)) for f in MANIFEST_FIELDS},
    )
    obs = _with_schema(obs)
    given = thresholds.filter(pl.col("slide_id") == slide_id)
    thresholds_used = pl.DataFrame(
        {"stain": [stains[k] for k in keys]}).join(
        given.select("stain", "threshold", "threshold_version"), on="stain", how="left",
        maintain_order="left"
    ).with_columns(slide_id=pl.lit(slide_id)).select(list(THRESHOLD_COLUMNS)).cast(
        THRESHOLD_COLUMNS)
    x = features.select([MEAN_PREFIX + k for k in keys]).to_numpy().astype(np.float32)
    xy = features.select("centroid_x_um", "centroid_y_um").to_numpy().astype(np.float64)
    return NucleusTable(x.reshape(features.height, len(keys)), tuple(stains[k] for k in keys),
                        obs, xy.reshape(features.height, 2), thresholds_used, tuple(cell_types))


def _with_schema(obs: pl.DataFrame) -> pl.DataFrame:
    absent = [pl.lit(None, dtype).alias(c) for c, dtype in OBS_SCHEMA.items()
              if c not in obs.columns]
    return obs.with_columns(absent).select(list(OBS_SCHEMA)).cast(OBS_SCHEMA)


def concat_tables(tables: Sequence[NucleusTable]) -> NucleusTable:
    """The cohort table: slides stacked in the given order, stains the union in first-seen
    order (NaN where a slide has no such stain)."""
    stains: list[str] = []
    for table in tables:
        stains += [s for s in table.stains if s not in stains]
    column = {s: i for i, s in enumerate(stains)}
    x = np.full((sum(t.n_nuclei for t in tables), len(stains)), np.nan, np.float32)
    row = 0
    for table in tables:
        x[row:row + table.n_nuclei, [column[s] for s in table.stains]] = table.mean_intensity
        row += table.n_nuclei
    empty_obs = pl.DataFrame(schema=OBS_SCHEMA)
    return NucleusTable(
        x, tuple(stains),
        pl.concat([empty_obs, *(t.obs for t in tables)]),
        np.concatenate([np.empty((0, 2)), *(t.centroid_xy_um for t in tables)]),
        pl.concat([pl.DataFrame(schema=THRESHOLD_COLUMNS), *(t.thresholds for t in tables)]),
        tables[0].cell_types if tables else CELL_TYPES,
    )
