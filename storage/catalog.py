"""The DuckDB catalog: one database file of views over the Parquet datasets and the rule SQL.

A user opens it read-only with the duckdb CLI (`duckdb -readonly data/catalog.duckdb`) or Python
(`duckdb.connect("data/catalog.duckdb", read_only=True)`). The file holds no nucleus rows, only
view definitions that read the Parquet datasets where they lie, so it is small and always shows
the datasets' current contents. It is rebuilt as a whole in a temporary file that then replaces
the old one, so a reader never opens a half-built catalog. A process that holds the file open
for writing (`duckdb data/catalog.duckdb` without `-readonly`) would leave a write-ahead log
beside the new file that no reader can open, so a rebuild refuses while one does and says what
to close.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import glob
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from storage.atomic import atomic_path, remove_own_temporaries
from storage.errors import CatalogBusyError, StoreLayoutError
from storage.fs import as_path, is_remote, local_copy, register_filesystem
from storage.layout import DataLayout
from storage.parquet_dataset import dataset_glob, scan_dataset, slide_ids
from storage.sql_files import cell_types_sql, read_cell_types, read_sql, sql_path
from storage.sql_quote import quote_identifier, quote_literal

HE_INFERENCE_VIEW = "he_nucleus_inference"
DATASET_STANDINS_SQL = "dataset_standins.sql"
CATALOG_TABLES_SQL = "queries/catalog_tables.sql"
TABLE_COLUMNS_SQL = "queries/table_columns.sql"


def _with_probability_columns(columns: str) -> str:
    """nucleus_inference's stand-in columns with one prob_<cell_type> FLOAT per class of the
    class table, in class index order, right after `probability`."""
    probability = "probability FLOAT, "
    if probability not in columns:
        raise StoreLayoutError(
            f"{sql_path(DATASET_STANDINS_SQL)}: nucleus_inference needs a probability FLOAT "
            "column, which the per-class probabilities follow.")
    per_class = "".join(f"prob_{row.cell_type} FLOAT, " for row in read_cell_types())
    return columns.replace(probability, probability + per_class, 1)


@functools.cache
def standin_columns() -> dict[str, str]:
    """Each dataset view's empty stand-in, as `name TYPE, ...`: the tables of
    sql/dataset_standins.sql, read back through DuckDB (once, on first use, so importing the
    catalog costs no database)."""
    con = duckdb.connect()
    try:
        con.execute(read_sql(DATASET_STANDINS_SQL))
        columns = dict(con.execute(read_sql(TABLE_COLUMNS_SQL)).fetchall())
    finally:
        con.close()
    columns["nucleus_inference"] = _with_probability_columns(columns["nucleus_inference"])
    return columns


@dataclass(frozen=True)
class ParquetSource:
    """A view over Parquet files; `empty_columns` makes an empty table when none exist yet."""

    view: str
    glob: str
    empty_columns: str | None = None


@dataclass(frozen=True)
class CatalogSpec:
    """What the catalog holds: Parquet views first, then SQL scripts run in order."""

    sources: tuple[ParquetSource, ...]
    scripts: tuple[str, ...] = field(default_factory=tuple)


def layout_sources(layout: DataLayout) -> tuple[ParquetSource, ...]:
    """The project's datasets as catalog views (empty tables for those not written yet)."""
    empty = standin_columns()
    return (
        ParquetSource("nucleus_features", dataset_glob(layout.features_dir),
                      empty["nucleus_features"]),
        ParquetSource("stain_thresholds", dataset_glob(layout.thresholds_dir),
                      empty["stain_thresholds"]),
        ParquetSource("nucleus_labels", dataset_glob(layout.labels_dir), empty["nucleus_labels"]),
        ParquetSource("slide_manifest", str(layout.manifest_parquet), empty["slide_manifest"]),
        ParquetSource("nucleus_inference", dataset_glob(layout.inference_dir),
                      empty["nucleus_inference"]),
        # real H&E slides: predictions only, apart from every MxIF view (no labels exist)
        ParquetSource(HE_INFERENCE_VIEW, dataset_glob(layout.he.inference_dir),
                      empty["nucleus_inference"]),
    )


def threshold_stain_keys(layout: DataLayout) -> list[str]:
    """Every stain_key in the stain_thresholds dataset (raw; validate before use in SQL);
    empty when no slide has thresholds yet."""
    if not slide_ids(layout.thresholds_dir):
        return []
    frame = scan_dataset(layout.thresholds_dir).select("stain_key").unique()
    return sorted(frame.collect()["stain_key"].to_list())


def _has_files(pattern: str) -> bool:
    path = as_path(pattern)
    if isinstance(path, Path):
        return bool(glob.glob(pattern))
    return bool(path.fs.glob(path.path))


def _create_source(con: duckdb.DuckDBPyConnection, source: ParquetSource) -> None:
    name = quote_identifier(source.view)
    if _has_files(source.glob):
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet({quote_literal(source.glob)}, "
            "union_by_name = true, hive_partitioning = false)"
        )
    elif source.empty_columns is not None:
        con.execute(f"CREATE TABLE {name} ({source.empty_columns})")
    else:
        raise StoreLayoutError(
            f"The catalog needs {source.view} but {source.glob} matches no file: "
            "materialise it first."
        )


def _held_for_writing(db_path: Path) -> bool:
    """True when another process holds DuckDB's write lock on the file (a read-write
    connection); read-only connections take shared locks, which a shared lock here passes."""
    try:
        fd = os.open(db_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def ensure_no_writer(db_path: Path) -> None:
    """Refuse to replace a catalog that a process has open for writing, or whose write-ahead
    log is still beside it; name the file and say what to close."""
    db_path = as_path(db_path)
    if is_remote(db_path):
        return
    wal = db_path.with_name(db_path.name + ".wal")
    if _held_for_writing(db_path):
        raise CatalogBusyError(
            f"The catalog {db_path} is open for writing in another process (e.g. "
            f"`duckdb {db_path}` without -readonly). Close it and re-run; open it with "
            f"`duckdb -readonly {db_path}` to read while the pipeline runs.")
    if wal.exists():
        raise CatalogBusyError(
            f"The catalog {db_path} has a write-ahead log ({wal}) from a process that wrote to "
            "it and has not closed it, or that crashed. Close that process and re-run; if none "
            f"is running, delete {wal}.")


def build_catalog(db_path: Path, spec: CatalogSpec) -> Path:
    """Build the catalog file at `db_path` from scratch, replacing the old one atomically.

    On object storage the file is built locally and uploaded; its views read the Parquet
    datasets by URL, through the fsspec filesystem registered on the connection.
    """
    db_path = as_path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    ensure_no_writer(db_path)
    remove_own_temporaries(db_path)  # the folder holds other artifacts being written
    with atomic_path(db_path) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            register_filesystem(con, db_path)
            for source in spec.sources:
                _create_source(con, source)
            for script in spec.scripts:
                con.execute(script)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        wal = tmp.with_name(tmp.name + ".wal")
        wal.unlink(missing_ok=True)
    return db_path


def refresh_sources(db_path: Path, sources: Sequence[ParquetSource]) -> list[str]:
    """Turn the empty stand-in tables of datasets written since the catalog was built into
    their views; returns the views made (none: the file is left as it is).

    The catalog is copied, changed and swapped in atomically (uploaded on object storage), so
    readers see the old file or the new one. Views that read a stand-in (e.g.
    nucleus_inference_vs_labels) read the dataset from then on. Nothing happens when the
    catalog does not exist yet.
    """
    db_path = as_path(db_path)
    if not db_path.is_file():
        return []
    with local_copy(db_path) as local:
        con = duckdb.connect(str(local), read_only=True)
        try:
            tables = {row[0] for row in con.execute(read_sql(CATALOG_TABLES_SQL)).fetchall()}
        finally:
            con.close()
    stale = [s for s in sources if s.view in tables and _has_files(s.glob)]
    if not stale:
        return []
    ensure_no_writer(db_path)
    with atomic_path(db_path) as tmp, local_copy(db_path) as local:
        shutil.copyfile(local, tmp)
        con = duckdb.connect(str(tmp))
        try:
            register_filesystem(con, db_path)
            for source in stale:
                con.execute(f"DROP TABLE {quote_identifier(source.view)}")
                _create_source(con, source)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return [s.view for s in stale]


def query_catalog(db_path: Path, sql: str, parameters: Sequence | Mapping | None = None
                  ) -> pl.DataFrame:
    """Run a read-only query on the catalog file and return the result (a catalog on object
    storage is downloaded to a temporary file first)."""
    db_path = as_path(db_path)
    if not db_path.is_file():
        raise StoreLayoutError(f"No catalog at {db_path}: materialise nucleus_catalog first.")
    with local_copy(db_path) as local:
        con = duckdb.connect(str(local), read_only=True)
        try:
            register_filesystem(con, db_path)
            return pl.from_arrow(con.sql(sql, params=parameters).to_arrow_table())
        finally:
            con.close()


CATALOG_VIEWS_SQL = "catalog_views.sql"
DEFAULT_RULES_SQL = "cell_type_rules.sql"


def project_catalog_spec(
    layout: DataLayout, positivity_sql: str, rules_sql: str | Path = DEFAULT_RULES_SQL
) -> CatalogSpec:
    """The project's catalog: dataset views, then stain_positivity, the class table (TEMP, for
    the rule file), the rules, the summaries.

    `positivity_sql` is generated from the cohort's validated stain keys (see
    pipelines.labels.positivity_view_sql); `rules_sql` names a rule file under sql/ or a path.
    """
    return CatalogSpec(
        sources=layout_sources(layout),
        scripts=(positivity_sql, cell_types_sql(), read_sql(rules_sql),
                 read_sql(CATALOG_VIEWS_SQL)),
    )
