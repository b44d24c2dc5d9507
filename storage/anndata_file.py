"""Per-nucleus tables as AnnData `.h5ad` (scanpy, squidpy, SCIMAP read them as they are).

Layout of a file written by `write_nucleus_h5ad`:

- `X` float32 (nucleus, stain): mean intensity; `var_names` the canonical stains.
- `obs` indexed by `nucleus_id` (as text, AnnData wants string names): the columns of
  pipelines/nucleus_table.OBS_SCHEMA, text columns as categoricals (`cell_type` with all 14
  classes as categories, in class order).
- `obsm["spatial"]` float64 (nucleus, 2): centroid x, y in µm.
- `uns["thresholds"]`: the cut-off of every stain per slide in SCIMAP's gate-table shape, a
  `markers` column and one column per slide_id (same intensity units as X, linear scale);
  `uns["threshold_version"]`: slide_id -> the version the labels were computed with.

Columns are handed to AnnData as object/categorical arrays, so the file is the same whichever
pandas string default is in force. Written to a temporary file and renamed (storage/atomic.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from storage.atomic import atomic_path, remove_own_temporaries
from storage.errors import StoreLayoutError
from storage.fs import StoragePath, as_path, local_copy

# anndata and pandas (about 1.3 s of imports) load when a table is written or read, not with the
# definitions every Dagster run worker loads.
if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd

# obs columns, in order; text columns become categoricals in the file.
OBS_SCHEMA: dict[str, pl.DataType] = {
    "nucleus_id": pl.Int64(),
    "label": pl.Int32(),  # the nucleus's value in the mask (and in the OME-Zarr labels)
    "slide_id": pl.Utf8(),
    "patient_id": pl.Utf8(),
    "site": pl.Utf8(),
    "condition": pl.Utf8(),
    "cell_type": pl.Utf8(),
    "excluded_at_step": pl.Int16(),
    "threshold_version": pl.Utf8(),
    "predicted_cell_type": pl.Utf8(),
    "predicted_probability": pl.Float32(),
}
THRESHOLD_COLUMNS: dict[str, pl.DataType] = {
    "slide_id": pl.Utf8(), "stain": pl.Utf8(), "threshold": pl.Float64(),
    "threshold_version": pl.Utf8(),
}
CLASS_COLUMNS = ("cell_type", "predicted_cell_type")  # categories: `cell_types`, in order
MARKERS = "markers"  # SCIMAP's name for the stain column of a gate table


@dataclass(frozen=True)
class NucleusTable:
    """`mean_intensity` (nucleus, stain) float32 in the slide's intensity units, NaN where a
    slide of the cohort lacks the stain; `obs` the OBS_SCHEMA columns; `centroid_xy_um`
    (nucleus, 2) as x, y in µm (the order squidpy's `obsm["spatial"]` uses); `thresholds`
    one row per slide and stain (THRESHOLD_COLUMNS); `cell_types` the class order."""

    mean_intensity: np.ndarray
    stains: tuple[str, ...]
    obs: pl.DataFrame
    centroid_xy_um: np.ndarray
    thresholds: pl.DataFrame
    cell_types: tuple[str, ...]

    @property
    def n_nuclei(self) -> int:
        return self.obs.height


def _text(values: list[str | None]) -> np.ndarray:
    return np.array(values, dtype=object)


def _obs_frame(obs: pl.DataFrame, cell_types: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    # obs_names: nucleus_id as text (the integer stays a column of the same name)
    index = pd.Index(_text([str(i) for i in obs["nucleus_id"].to_list()]), dtype=object)
    columns: dict[str, object] = {}
    for name, dtype in OBS_SCHEMA.items():
        values = obs[name]
        if dtype == pl.Utf8():
            seen = values.drop_nulls().unique().sort().to_list()
            known = list(cell_types) if name in CLASS_COLUMNS else []
            categories = known + [v for v in seen if v not in known]
            columns[name] = pd.Categorical(_text(values.to_list()),
                                           categories=pd.Index(_text(categories), dtype=object))
        elif dtype == pl.Int16():
            columns[name] = pd.array(values.to_list(), dtype="Int16")
        else:
            columns[name] = values.to_numpy()
    return pd.DataFrame(columns, index=index)


def _gate_table(thresholds: pl.DataFrame, stains: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    slides = thresholds["slide_id"].unique(maintain_order=True).to_list()
    if MARKERS in slides:
        raise StoreLayoutError(f"A slide named {MARKERS!r} cannot have a column of the gate "
                               "table (SCIMAP names the stain column so): rename the slide.")
    wide = {MARKERS: _text(list(stains))}
    for slide_id in slides:
        mine = dict(thresholds.filter(pl.col("slide_id") == slide_id)
                    .select("stain", "threshold").iter_rows())
        wide[slide_id] = np.array([mine.get(s, np.nan) for s in stains], dtype=np.float64)
    frame = pd.DataFrame(wide)
    frame.columns = pd.Index(_text(list(frame.columns)), dtype=object)
    return frame


def to_anndata(table: NucleusTable) -> ad.AnnData:
    import anndata as ad
    import pandas as pd

    var = pd.DataFrame(index=pd.Index(_text(list(table.stains)), dtype=object, name="stain"))
    versions = dict(table.thresholds.select("slide_id", "threshold_version")
                    .unique(maintain_order=True).iter_rows())
    adata = ad.AnnData(X=table.mean_intensity, obs=_obs_frame(table.obs, table.cell_types),
                       var=var)
    adata.obsm["spatial"] = table.centroid_xy_um
    adata.uns["thresholds"] = _gate_table(table.thresholds, table.stains)
    adata.uns["threshold_version"] = {k: v or "" for k, v in versions.items()}
    return adata


def write_nucleus_h5ad(path: StoragePath, table: NucleusTable) -> StoragePath:
    """Write `table` as `.h5ad` at `path` atomically; returns the path."""
    adata = to_anndata(table)
    remove_own_temporaries(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(str(tmp), compression="gzip")
    return as_path(path)


def read_nucleus_table(path: StoragePath) -> NucleusTable:
    """A file `write_nucleus_h5ad` wrote, back as a NucleusTable (the cohort file is built
    from the slides' files)."""
    path = as_path(path)
    if not path.exists():
        raise StoreLayoutError(f"No AnnData file at {path}: materialise nucleus_anndata for "
                               "that slide first.")
    import anndata as ad

    with local_copy(path) as local:
        adata = ad.read_h5ad(str(local))
    obs = adata.obs
    frame = pl.DataFrame({
        name: pl.Series(name, obs[name].astype(object).where(obs[name].notna(), None).tolist(),
                        dtype=dtype, strict=False)
        for name, dtype in OBS_SCHEMA.items()
    })
    gates = adata.uns["thresholds"]
    versions = adata.uns.get("threshold_version", {})
    rows = [(str(slide), str(stain), float(value), versions.get(slide) or None)
            for slide in gates.columns if slide != MARKERS
            for stain, value in zip(gates[MARKERS], gates[slide], strict=True)]
    thresholds = pl.DataFrame(rows, schema=THRESHOLD_COLUMNS, orient="row")
    cell_types = tuple(map(str, obs["cell_type"].cat.categories))
    return NucleusTable(np.asarray(adata.X, dtype=np.float32), tuple(map(str, adata.var_names)),
                        frame, np.asarray(adata.obsm["spatial"], dtype=np.float64), thresholds,
                        cell_types)
