"""The cross-validation folds table (layout.root / "folds.parquet"): patient_id, fold, role."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from storage.atomic import atomic_path
from storage.errors import StoreLayoutError
from storage.fs import StoragePath, as_path, read_parquet

FOLDS_FILE = "folds.parquet"
COLUMNS = ("patient_id", "fold", "role")


def folds_path(root: Path) -> StoragePath:
    return as_path(root) / FOLDS_FILE


def write_folds(path: Path, folds: pl.DataFrame) -> StoragePath:
    """Replace the folds table atomically."""
    missing = set(COLUMNS) - set(folds.columns)
    if missing:
        raise StoreLayoutError(
            f"A folds table needs columns {list(COLUMNS)}; {sorted(missing)} are missing."
        )
    with atomic_path(path) as tmp:
        folds.select(COLUMNS).write_parquet(tmp, compression="zstd")
    return as_path(path)


def read_folds(path: Path) -> pl.DataFrame:
    path = as_path(path)
    if not path.is_file():
        raise StoreLayoutError(f"No folds table at {path}: materialise the fold_split asset first.")
    folds = read_parquet(path)
    missing = set(COLUMNS) - set(folds.columns)
    if missing:
        raise StoreLayoutError(
            f"{path} lacks columns {sorted(missing)}; re-materialise fold_split."
        )
    return folds.select(COLUMNS)
