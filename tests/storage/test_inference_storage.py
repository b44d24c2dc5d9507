"""Storage for inference: the trained folds on disk, and a catalog built before a dataset
existed turning its stand-in table into the dataset's view."""

from __future__ import annotations

import polars as pl
import torch

from pipelines.cell_types import CELL_TYPES
from storage import classifier_checkpoints as ckpt
from storage.catalog import (
    CatalogSpec,
    ParquetSource,
    build_catalog,
    query_catalog,
    refresh_sources,
    standin_columns,
)
from storage.parquet_dataset import dataset_glob, write_slide_partition

INFERENCE_COLUMNS = standin_columns()["nucleus_inference"]


def test_trained_folds_lists_folds_with_kept_weights(tmp_path) -> None:
    assert ckpt.trained_folds(tmp_path) == []
    for fold in (3, 0):
        ckpt.save_model(ckpt.fold_dir(tmp_path, fold), {"w": torch.zeros(2)}, {"fold": fold})
    ckpt.save_training_state(ckpt.fold_dir(tmp_path, 1), {"step": 5})  # interrupted: no model
    (tmp_path / "classifier" / "fold=x").mkdir()
    assert ckpt.trained_folds(tmp_path) == [0, 3]


def test_stand_in_becomes_the_view_once_the_dataset_exists(tmp_path) -> None:
    dataset = tmp_path / "nucleus_inference"
    source = ParquetSource("nucleus_inference", dataset_glob(dataset), INFERENCE_COLUMNS)
    db = tmp_path / "catalog.duckdb"
    assert refresh_sources(db, [source]) == []  # no catalog yet: nothing to do
    spec = CatalogSpec((source,), ("CREATE VIEW per_slide AS SELECT slide_id, count(*) AS n "
                                   "FROM nucleus_inference GROUP BY slide_id",))
    build_catalog(db, spec)
    assert query_catalog(db, "SELECT count(*) FROM per_slide").item() == 0
    assert refresh_sources(db, [source]) == []  # still no files

    write_slide_partition(dataset, "S1", pl.DataFrame({
        "nucleus_id": [1, 2, 3], "slide_id": "S1", "predicted_cell_type": "goblet",
        "models": pl.Series([[0, 1]] * 3, dtype=pl.List(pl.Int16))}))
    assert refresh_sources(db, [source]) == ["nucleus_inference"]
    assert query_catalog(db, "SELECT * FROM per_slide").rows() == [("S1", 3)]
    write_slide_partition(dataset, "S2", pl.DataFrame({"nucleus_id": [4], "slide_id": "S2"}))
    assert refresh_sources(db, [source]) == []  # a view already: it sees new slides itself
    assert query_catalog(db, "SELECT count(*) FROM nucleus_inference").item() == 4
    assert not list(tmp_path.glob(".catalog.duckdb.tmp-*"))


def test_stand_in_columns_name_every_class() -> None:
    for name in CELL_TYPES:
        assert f"prob_{name} FLOAT" in INFERENCE_COLUMNS
    # in class index order, between the predicted class's probability and the models
    probabilities = "".join(f"prob_{name} FLOAT, " for name in CELL_TYPES)
    assert f"probability FLOAT, {probabilities}models SMALLINT[]" in INFERENCE_COLUMNS
