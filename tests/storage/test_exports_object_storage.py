"""The AnnData and OME-NGFF exports on object storage (fsspec `memory://`, no network): written
locally, uploaded complete, read back."""

from __future__ import annotations

import uuid

import numpy as np
import polars as pl
import pytest
import zarr
from upath import UPath

from storage.anndata_file import (
    OBS_SCHEMA,
    THRESHOLD_COLUMNS,
    NucleusTable,
    read_nucleus_table,
    write_nucleus_h5ad,
)
from storage.errors import StoreLayoutError
from storage.fs import zarr_store
from storage.layout import DataLayout
from storage.ome_zarr import NgffImage, write_ome_zarr


def _layout() -> DataLayout:
    return DataLayout(str(UPath(f"memory://exports-{uuid.uuid4().hex[:8]}/data")))


def _table(slide_id: str = "S1") -> NucleusTable:
    obs = pl.DataFrame({"nucleus_id": [7, 9], "label": [1, 2], "slide_id": [slide_id] * 2,
                        "cell_type": ["b_cell", None], "excluded_at_step": [None, 3]})
    obs = obs.with_columns([pl.lit(None, t).alias(c) for c, t in OBS_SCHEMA.items()
                            if c not in obs.columns]).select(list(OBS_SCHEMA)).cast(OBS_SCHEMA)
    thresholds = pl.DataFrame([(slide_id, "DAPI", 10.0, "v1"), (slide_id, "CD20", 2.5, "v1")],
                              schema=THRESHOLD_COLUMNS, orient="row")
    return NucleusTable(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), ("DAPI", "CD20"), obs,
                        np.array([[1.5, 2.5], [3.5, 4.5]]), thresholds, ("b_cell", "goblet"))


def test_h5ad_round_trips_on_object_storage() -> None:
    layout = _layout()
    table = _table()
    thresholds = table.thresholds
    path = write_nucleus_h5ad(layout.anndata_slide("S1"), table)
    assert str(path).startswith("memory://")
    back = read_nucleus_table(path)
    assert back.obs.equals(table.obs) and back.thresholds.equals(thresholds)
    np.testing.assert_array_equal(back.mean_intensity, table.mean_intensity)
    np.testing.assert_array_equal(back.centroid_xy_um, table.centroid_xy_um)
    assert back.cell_types == ("b_cell", "goblet")


def test_a_slide_named_like_the_gate_tables_stain_column_is_refused(tmp_path) -> None:
    with pytest.raises(StoreLayoutError, match=r"'markers'.*rename the slide"):
        write_nucleus_h5ad(tmp_path / "markers.h5ad", _table("markers"))
    assert list(tmp_path.iterdir()) == []


def test_ome_zarr_is_uploaded_whole() -> None:
    layout = _layout()
    image = np.arange(2 * 100 * 90, dtype=np.uint16).reshape(2, 100, 90)
    path = layout.ome_zarr_dir("S1") / "mxif.ome.zarr"
    out = write_ome_zarr(path, NgffImage("S1", ("DAPI", "CD8"), ("0000FF", "FF0000"), 0.5,
                                         100, 90, "uint16", lambda a, b, c, d: image[:, a:c, b:d]),
                         lambda a, b, c, d: np.full((c - a, d - b), 4, np.int32), tile_px=64)
    assert out.level_shapes == ((100, 90), (50, 45))
    group = zarr.open_group(zarr_store(path, read_only=True), mode="r", zarr_format=2)
    assert group.attrs["multiscales"][0]["version"] == "0.4"
    np.testing.assert_array_equal(group["0"][:], image)
    assert (group["labels/nuclei/1"][:] == 4).all()
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]
