"""Ingested slides: one Zarr group per slide, array `image` shaped (stain, y, x).

Attributes carry the stain names (canonical), the pixel size `mpp` (µm per pixel) and the
slide id, so any reader with plain `zarr` knows what it is looking at.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from storage.errors import StoreLayoutError
from storage.fs import as_path
from storage.tiles import Tile, tile_grid
from storage.zarr_io import default_compressors, new_group, open_group

KIND = "slide"
DEFAULT_CHUNK_PX = 1024


@dataclass(frozen=True)
class SlideInfo:
    slide_id: str
    stains: tuple[str, ...]
    mpp: float
    height_px: int
    width_px: int
    dtype: str


class SlideWriter:
    """Receives a slide window by window; nothing is visible at the final path until closed."""

    def __init__(self, image: zarr.Array) -> None:
        self._image = image

    def write(self, y0: int, x0: int, block: np.ndarray, stain_index: int | None = None) -> None:
        """Write `block` (stain, h, w), or (h, w) for one stain, at (y0, x0)."""
        if stain_index is None:
            _, h, w = block.shape
            self._image[:, y0 : y0 + h, x0 : x0 + w] = block
        else:
            h, w = block.shape
            self._image[stain_index, y0 : y0 + h, x0 : x0 + w] = block


@contextmanager
def create_slide(
    path: Path,
    info: SlideInfo,
    source: dict[str, str] | None = None,
    chunk_px: int = DEFAULT_CHUNK_PX,
) -> Iterator[SlideWriter]:
    """Open a slide store for writing; it is published atomically when the block exits cleanly."""
    with new_group(path, KIND) as group:
        image = group.create_array(
            "image",
            shape=(len(info.stains), info.height_px, info.width_px),
            chunks=(1, min(chunk_px, info.height_px), min(chunk_px, info.width_px)),
            dtype=info.dtype,
            compressors=default_compressors(np.dtype(info.dtype).itemsize),
            fill_value=0,
            dimension_names=("stain", "y", "x"),
        )
        group.attrs.update(
            {
                "slide_id": info.slide_id,
                "stains": list(info.stains),
                "mpp": float(info.mpp),
                "source": source or {},
            }
        )
        yield SlideWriter(image)


class SlideReader:
    """Read windows of an ingested slide; only the chunks a window touches are decoded."""

    def __init__(self, path: Path) -> None:
        self.path = as_path(path)
        group = open_group(self.path, KIND)
        self._image = group["image"]
        attrs = dict(group.attrs)
        stains = tuple(attrs["stains"])
        if len(stains) != self._image.shape[0]:
            raise StoreLayoutError(f"{path}: {len(stains)} stain names for {self._image.shape[0]}.")
        self.info = SlideInfo(
            slide_id=attrs["slide_id"],
            stains=stains,
            mpp=float(attrs["mpp"]),
            height_px=int(self._image.shape[1]),
            width_px=int(self._image.shape[2]),
            dtype=str(self._image.dtype),
        )
        self.source: dict[str, str] = dict(attrs.get("source", {}))

    @property
    def chunk_px(self) -> tuple[int, int]:
        return int(self._image.chunks[1]), int(self._image.chunks[2])

    def stain_index(self, stain: str) -> int:
        try:
            return self.info.stains.index(stain)
        except ValueError as exc:
            raise StoreLayoutError(
                f"Slide {self.info.slide_id!r} has no stain {stain!r}; "
                f"it has {list(self.info.stains)}."
            ) from exc

    def read(
        self,
        y0: int = 0,
        x0: int = 0,
        y1: int | None = None,
        x1: int | None = None,
        stains: Sequence[str] | None = None,
    ) -> np.ndarray:
        """A (stain, h, w) window; `stains` picks and orders stains by name."""
        y1 = self.info.height_px if y1 is None else y1
        x1 = self.info.width_px if x1 is None else x1
        if stains is None:
            return np.asarray(self._image[:, y0:y1, x0:x1])
        index = [self.stain_index(s) for s in stains]
        return np.stack([np.asarray(self._image[i, y0:y1, x0:x1]) for i in index])

    def tiles(self, tile_px: int | None = None, halo_px: int = 0) -> Iterator[Tile]:
        """Tiles aligned to the storage chunks by default, so each chunk is decoded once."""
        tile_px = tile_px or self.chunk_px[0]
        return tile_grid(self.info.height_px, self.info.width_px, tile_px, halo_px)

    def iter_windows(
        self, tile_px: int | None = None, halo_px: int = 0, stains: Sequence[str] | None = None
    ) -> Iterator[tuple[Tile, np.ndarray]]:
        for tile in self.tiles(tile_px, halo_px):
            yield tile, self.read(tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1, stains)


def open_slide(path: Path) -> SlideReader:
    return SlideReader(path)
