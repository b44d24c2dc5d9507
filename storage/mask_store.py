"""Nucleus label images: one Zarr group per slide, array `labels` int32 (y, x), 0 = background."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr

from storage.fs import as_path
from storage.tiles import Tile, tile_grid
from storage.zarr_io import default_compressors, new_group, open_group

KIND = "nucleus_mask"
DEFAULT_CHUNK_PX = 1024


class MaskWriter:
    def __init__(self, labels: zarr.Array) -> None:
        self._labels = labels

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        h, w = block.shape
        self._labels[y0 : y0 + h, x0 : x0 + w] = block.astype(np.int32, copy=False)


@contextmanager
def create_mask(
    path: Path,
    slide_id: str,
    height_px: int,
    width_px: int,
    attrs: dict | None = None,
    chunk_px: int = DEFAULT_CHUNK_PX,
) -> Iterator[MaskWriter]:
    """A mask store on the slide's grid, published atomically when the block exits cleanly."""
    with new_group(path, KIND) as group:
        labels = group.create_array(
            "labels",
            shape=(height_px, width_px),
            chunks=(min(chunk_px, height_px), min(chunk_px, width_px)),
            dtype="int32",
            compressors=default_compressors(4),
            fill_value=0,
            dimension_names=("y", "x"),
        )
        group.attrs.update({"slide_id": slide_id, **(attrs or {})})
        yield MaskWriter(labels)


class MaskReader:
    def __init__(self, path: Path) -> None:
        self.path = as_path(path)
        group = open_group(self.path, KIND)
        self._labels = group["labels"]
        self.attrs = dict(group.attrs)
        self.slide_id: str = self.attrs["slide_id"]
        self.height_px, self.width_px = (int(s) for s in self._labels.shape)

    @property
    def chunk_px(self) -> int:
        return int(self._labels.chunks[0])

    def read(self, y0: int = 0, x0: int = 0, y1: int | None = None, x1: int | None = None):
        y1 = self.height_px if y1 is None else y1
        x1 = self.width_px if x1 is None else x1
        return np.asarray(self._labels[y0:y1, x0:x1])

    def tiles(self, tile_px: int | None = None, halo_px: int = 0) -> Iterator[Tile]:
        return tile_grid(self.height_px, self.width_px, tile_px or self.chunk_px, halo_px)


def open_mask(path: Path) -> MaskReader:
    return MaskReader(path)
