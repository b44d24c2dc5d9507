"""Small helpers every Zarr store here shares: codecs and atomic creation of a group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from storage.atomic import atomic_path, remove_own_temporaries
from storage.errors import StoreLayoutError
from storage.fs import as_path, zarr_store

FORMAT_VERSION = 1


def default_compressors(itemsize: int = 1) -> tuple[BloscCodec, ...]:
    """lz4 through Blosc with byte shuffle.

    On noisy uint16 slides zstd-3 compresses ~10% smaller but encodes ~3x slower (about
    23 MB/s per core), which made compression the bottleneck of every streaming stage.
    """
    shuffle = BloscShuffle.bitshuffle if itemsize == 1 else BloscShuffle.shuffle
    return (BloscCodec(cname="lz4", clevel=5, shuffle=shuffle, typesize=itemsize),)


@contextmanager
def new_group(final: Path, kind: str) -> Iterator[zarr.Group]:
    """Create a Zarr group in a temporary directory; it appears at `final` only when complete.

    Leftovers of earlier killed writes of the same store are removed first.
    """
    remove_own_temporaries(final)
    with atomic_path(final) as tmp:
        group = zarr.open_group(store=str(tmp), mode="w", zarr_format=3)
        group.attrs.update({"kind": kind, "format_version": FORMAT_VERSION})
        yield group


def open_group(path: Path, kind: str, mode: str = "r") -> zarr.Group:
    """Open a finished store and check it is the kind of store the caller expects.

    On object storage a store exists once its `zarr.json` does (it is uploaded last).
    """
    path = as_path(path)
    if not (path.exists() if isinstance(path, Path) else (path / "zarr.json").exists()):
        raise StoreLayoutError(f"No {kind} store at {path}: materialise the asset that writes it.")
    group = zarr.open_group(store=zarr_store(path, read_only=mode == "r"), mode=mode)
    found = group.attrs.get("kind")
    if found != kind:
        raise StoreLayoutError(f"{path} holds a {found!r} store, expected {kind!r}.")
    return group
