"""Hive-partitioned Parquet datasets (`<dataset>/slide_id=<id>/part-0.parquet`, zstd).

Each slide's partition is replaced atomically as a whole, so re-processing one slide never
touches another's rows and a reader never sees a half-written file. The `slide_id` column is
kept inside each file too, so a single file read on its own still says where it came from.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from storage.atomic import atomic_path, remove_own_temporaries
from storage.fs import StoragePath, as_path, glob, read_parquet, remove_tree, scan_parquet
from storage.layout import validate_slide_id

PART_NAME = "part-0.parquet"


def partition_path(dataset_dir: Path, slide_id: str) -> StoragePath:
    return as_path(dataset_dir) / f"slide_id={validate_slide_id(slide_id)}" / PART_NAME


def write_slide_partition(dataset_dir: Path, slide_id: str, frame: pl.DataFrame) -> StoragePath:
    """Replace one slide's partition with `frame` (which must carry a matching `slide_id`)."""
    if "slide_id" in frame.columns:
        other = frame.filter(pl.col("slide_id") != slide_id)
        if other.height:
            raise ValueError(f"Rows of another slide in the partition of {slide_id!r}.")
    else:
        frame = frame.with_columns(pl.lit(slide_id).alias("slide_id"))
    final = partition_path(dataset_dir, slide_id)
    remove_own_temporaries(final)
    with atomic_path(final) as tmp:
        frame.write_parquet(tmp, compression="zstd", compression_level=3, statistics=True)
    return final


def read_slide_partition(dataset_dir: Path, slide_id: str) -> pl.DataFrame:
    path = partition_path(dataset_dir, slide_id)
    if not path.exists():
        raise FileNotFoundError(
            f"No partition for slide {slide_id!r} in {dataset_dir}: materialise it first."
        )
    return read_parquet(path)


def delete_slide_partition(dataset_dir: Path, slide_id: str) -> None:
    remove_tree(partition_path(dataset_dir, slide_id))


def dataset_glob(dataset_dir: Path) -> str:
    """The glob DuckDB and polars read the whole dataset with (a URL on object storage)."""
    return str(as_path(dataset_dir) / "slide_id=*" / PART_NAME)


def scan_dataset(dataset_dir: Path) -> pl.LazyFrame:
    return scan_parquet(dataset_dir, f"slide_id=*/{PART_NAME}")


def slide_ids(dataset_dir: Path) -> list[str]:
    root = as_path(dataset_dir)
    if not isinstance(root, Path):  # one listing instead of a request per slide
        return sorted(p.parent.name.split("=", 1)[1] for p in glob(root, f"slide_id=*/{PART_NAME}"))
    if not root.is_dir():
        return []
    return sorted(
        p.name.split("=", 1)[1]
        for p in root.glob("slide_id=*")
        if (p / PART_NAME).exists()
    )
