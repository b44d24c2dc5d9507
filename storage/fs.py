"""Where the bytes go: a local folder (the default) or object storage through an fsspec URL.

A data root, and every path under it, is either a `pathlib.Path` (a local folder; `file://`
URLs become one) or a `upath.UPath` for any other fsspec URL (`s3://bucket/prefix`, `gs://`,
`az://`, `memory://` in tests). Both have the same `/`, `.name`, `.exists()`, `.open()`,
`.glob()` API, so most code never asks which it has; the few operations that differ live here.

Local paths take exactly the code paths they always took: nothing in this module runs for them
except `as_path`, which returns the `Path` unchanged.

Writing on object storage (see `staged`): a writer always writes a local temporary file or
folder, then it is uploaded:

- a file goes up in one PUT (a multipart upload is completed in one call too), so a reader sees
  the old object or the new one, never part of it;
- a folder (a Zarr group, a checkpoint) has many objects and no atomic rename. Its commit files
  (`zarr.json`, `checkpoint.json` directly in the folder) are deleted first, then the rest of the
  old folder, then the new objects are uploaded with the commit files last. Readers open a folder
  only when its commit file exists, so they see the old version, no version (retry), or the new
  one, never a mixture. A run that fails before the upload leaves the old version untouched.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias

import polars as pl
from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")
COMMIT_FILES = ("zarr.json", "checkpoint.json")
STAGING_PREFIX = "nucleus-subtyping-"

StoragePath: TypeAlias = Path | UPath


def as_path(value: str | os.PathLike[str] | UPath) -> StoragePath:
    """A `Path` for a local path or `file://` URL, a `UPath` for any other fsspec URL."""
    if isinstance(value, Path) and not isinstance(value, UPath):
        return value
    if isinstance(value, UPath):
        return Path(value.path) if value.protocol in LOCAL_PROTOCOLS else value
    text = os.fspath(value)
    if "://" not in text:
        return Path(text).expanduser()
    upath = UPath(text)
    return Path(upath.path) if upath.protocol in LOCAL_PROTOCOLS else upath


def is_remote(path: str | os.PathLike[str] | UPath) -> bool:
    """True for object storage (any fsspec URL but `file://`), False for a local path."""
    return not isinstance(as_path(path), Path)


def url(path: StoragePath) -> str:
    """The path as text: a local path as today, a remote one as its full URL."""
    return str(path)


def link(path: StoragePath) -> str:
    """A link a browser (the Dagster UI) can follow: `file://` + absolute path, or the URL."""
    return path.absolute().as_uri() if isinstance(path, Path) and not isinstance(path, UPath) \
        else str(path)


# ---------------------------------------------------------------- writing (object storage)


@contextmanager
def staged(final: UPath) -> Iterator[Path]:
    """Yield a local temporary path named like `final`; on success it is uploaded to `final`.

    Whatever the block writes there (a file, or a folder of files) replaces `final` as the module
    docstring describes; on error nothing is uploaded and the local copy is removed.
    """
    folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
    tmp = folder / final.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"Nothing was written to {tmp} for {final}.")
        upload(tmp, final)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def upload(local: Path, final: UPath) -> None:
    """Replace `final` by the local file or folder `local` (see the module docstring)."""
    fs, target = final.fs, final.path
    if local.is_file():
        if fs.isdir(target):
            remove_tree(final)
        fs.put_file(str(local), target)
        return
    files = sorted(p for p in local.rglob("*") if p.is_file())
    nested = [p for p in files if p.parent != local]
    top = sorted((p for p in files if p.parent == local), key=lambda p: p.name in COMMIT_FILES)
    remove_tree(final)
    for batch in (nested, top[: -1] if top else [], top[-1:]):
        if batch:
            rpaths = [f"{target}/{p.relative_to(local).as_posix()}" for p in batch]
            fs.put([str(p) for p in batch], rpaths)


def remove_tree(path: StoragePath) -> None:
    """Remove a file or folder (commit files first, so a reader never sees a half-removed one)."""
    path = as_path(path)
    if isinstance(path, Path):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return
    fs, target = path.fs, path.path
    if fs.isfile(target):
        fs.rm_file(target)
        return
    for name in COMMIT_FILES:
        if fs.isfile(f"{target}/{name}"):
            fs.rm_file(f"{target}/{name}")
    if fs.exists(target):
        fs.rm(target, recursive=True)


# ---------------------------------------------------------------- reading


def read_parquet(path: StoragePath, **kwargs: Any) -> pl.DataFrame:
    """`pl.read_parquet` for a local path (unchanged) or an object on object storage."""
    path = as_path(path)
    if isinstance(path, Path):
        return pl.read_parquet(path, **kwargs)
    return pl.read_parquet(io.BytesIO(path.read_bytes()), **kwargs)


def read_csv(path: StoragePath, **kwargs: Any) -> pl.DataFrame:
    path = as_path(path)
    if isinstance(path, Path):
        return pl.read_csv(path, **kwargs)
    return pl.read_csv(io.BytesIO(path.read_bytes()), **kwargs)


def glob(folder: StoragePath, pattern: str) -> list[StoragePath]:
    """Paths under `folder` matching `pattern` (e.g. `slide_id=*/part-0.parquet`), sorted."""
    folder = as_path(folder)
    if isinstance(folder, Path):
        return sorted(folder.glob(pattern))
    base = folder.path.rstrip("/")
    found = folder.fs.glob(f"{base}/{pattern}")
    return sorted((folder / p[len(base) + 1 :] for p in found), key=str)


def scan_parquet(folder: StoragePath, pattern: str) -> pl.LazyFrame:
    """Lazily scan the Parquet files under `folder` matching `pattern` (local: `pl.scan_parquet`
    on the glob; object storage: a pyarrow dataset over fsspec, read column by column)."""
    folder = as_path(folder)
    if isinstance(folder, Path):
        return pl.scan_parquet(str(folder / pattern), hive_partitioning=False)
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    files = [p.path for p in glob(folder, pattern)]
    if not files:
        raise FileNotFoundError(f"No Parquet file matches {folder}/{pattern}.")
    dataset = ds.dataset(files, format="parquet", filesystem=PyFileSystem(FSSpecHandler(folder.fs)))
    return pl.scan_pyarrow_dataset(dataset)


def tree_bytes(path: StoragePath) -> int:
    """Total size of a file or of the files under a folder (0 if absent)."""
    path = as_path(path)
    if isinstance(path, Path):
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if not path.exists():
        return 0
    return int(path.fs.du(path.path, total=True))


@contextmanager
def readable(path: StoragePath) -> Iterator[Path | BinaryIO]:
    """For readers taking a file name or an open binary file (tifffile): the local path itself,
    or the remote object opened for random access (closed on exit)."""
    path = as_path(path)
    if isinstance(path, Path):
        yield path
        return
    with path.open("rb") as fh:
        yield fh


@contextmanager
def local_copy(path: StoragePath) -> Iterator[Path]:
    """A local path holding `path`'s content: the path itself when local, else a downloaded
    temporary copy (file or folder) removed on exit. For readers that need a real file."""
    path = as_path(path)
    if isinstance(path, Path):
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
    try:
        local = folder / path.name
        path.fs.get(path.path, str(local), recursive=path.is_dir())
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- Zarr and DuckDB


def zarr_store(path: StoragePath, *, read_only: bool = False) -> Any:
    """What `zarr.open_group(store=...)` takes: the path text when local (as always), an
    `FsspecStore` over the path's filesystem and storage options otherwise."""
    path = as_path(path)
    if isinstance(path, Path):
        return str(path)
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(url(path), storage_options=dict(path.storage_options) or None,
                                read_only=read_only)


def register_filesystem(con: Any, path: StoragePath) -> None:
    """Let a DuckDB connection read `path`'s filesystem through fsspec (no-op when local).

    DuckDB reads `s3://` itself with its httpfs extension too; registering the fsspec filesystem
    makes it use the same credentials as the rest of the project, and works for any protocol.
    """
    path = as_path(path)
    if not isinstance(path, Path):
        con.register_filesystem(path.fs)
