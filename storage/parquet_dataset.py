"""Hive-partitioned Parquet datasets (`<dataset>/slide_id=<id>/part-0.parquet`, zstd).

Each slide's partition is replaced atomically as a whole, so re-processing one slide never
touches another's rows and a reader never sees a half-written file. The `slide_id` column is
kept inside each file too, so a single file read on its own still says where it came from.
A partition is written from one frame (`write_slide_partition`) or streamed in as row groups
(`create_slide_partition`), so a slide's rows never need to sit in memory at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

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


class PartitionWriter:
    """Row groups of one slide's partition, each `write` one group, into the temporary file
    that `create_slide_partition` renames over the partition when its block ends cleanly."""

    def __init__(self, tmp: Path, slide_id: str, schema: Mapping[str, pl.DataType]) -> None:
        self._tmp, self.slide_id = tmp, slide_id
        self._schema = pl.DataFrame(schema=dict(schema)).to_arrow().schema
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            tmp, self._schema, compression="zstd", compression_level=3, write_statistics=True)
        self.n_rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        """Append `frame` (the partition's columns, this slide's rows) as one row group."""
        if self._writer is None:
            raise ValueError(f"The partition of {self.slide_id!r} is closed to new rows.")
        _check_slide(frame, self.slide_id)
        if frame.height:
            self._writer.write_table(frame.to_arrow().select(self._schema.names)
                                     .cast(self._schema))
            self.n_rows += frame.height

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def rows(self, key: str, values: Sequence[object]) -> pl.DataFrame:
        """The rows written whose `key` is one of `values`, read back one row group at a time;
        ends writing (only `replace` may change the file afterwards)."""
        self.close()
        wanted = list(values)
        found = [frame.filter(pl.col(key).is_in(wanted)) for frame in self._groups()]
        return pl.concat(found) if found else pl.from_arrow(self._schema.empty_table())

    def replace(self, frame: pl.DataFrame, key: str) -> None:
        """Overwrite the rows whose `key` matches a row of `frame` with that row, in place (the
        file is rewritten one row group at a time into a sibling, then renamed)."""
        self.close()
        _check_slide(frame, self.slide_id)
        new = frame.select(self._schema.names)
        keys = new[key].to_list()
        revised = self._tmp.with_name(self._tmp.name + "-revised")
        try:
            with pq.ParquetWriter(revised, self._schema, compression="zstd",
                                  compression_level=3, write_statistics=True) as writer:
                for group in self._groups():
                    if group[key].is_in(keys).any():
                        group = group.update(new, on=key, include_nulls=True)
                    writer.write_table(group.to_arrow().cast(self._schema))
            os.replace(revised, self._tmp)
        except BaseException:
            revised.unlink(missing_ok=True)
            raise

    def _groups(self) -> Iterator[pl.DataFrame]:
        parquet = pq.ParquetFile(self._tmp)
        for k in range(parquet.num_row_groups):
            yield pl.from_arrow(parquet.read_row_group(k))


@contextmanager
def create_slide_partition(
    dataset_dir: Path, slide_id: str, schema: Mapping[str, pl.DataType]
) -> Iterator[PartitionWriter]:
    """Replace one slide's partition with the row groups written in the block (columns and
    types of `schema`; none written: an empty file with that schema). They go to a temporary
    sibling, renamed over the partition when the block ends cleanly, so a failed run leaves
    the old partition (or none), never half a file."""
    final = partition_path(dataset_dir, slide_id)
    remove_own_temporaries(final)
    with atomic_path(final) as tmp:
        writer = PartitionWriter(tmp, slide_id, schema)
        try:
            yield writer
        finally:
            writer.close()


def _check_slide(frame: pl.DataFrame, slide_id: str) -> None:
    if "slide_id" in frame.columns and frame.filter(pl.col("slide_id") != slide_id).height:
        raise ValueError(f"Rows of another slide in the partition of {slide_id!r}.")


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
