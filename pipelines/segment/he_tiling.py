"""H&E nucleus labels of a whole image, tile by tile, stitched as the MxIF backends are.

An H&E backend segments one RGB window (`segment_rgb(rgb, mpp)`, labels on the window's own
grid); the windows are cut with a halo and stitched by pipelines/segment/stitching.py, so a
nucleus on a tile border keeps one label and is never split or counted twice. Memory stays at
a few windows whatever the image size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from pipelines.errors import ConfigurationError
from pipelines.segment.stitching import LabelStitcher
from storage.tiles import DEFAULT_TILE_PX, Tile


@runtime_checkable
class HeSegmenter(Protocol):
    """Segments nuclei in one (h, w, 3) uint8 H&E window at `mpp` µm/px -> int32 (h, w)."""

    name: str

    def halo_for(self, mpp: float) -> int: ...

    def segment_rgb(self, rgb: np.ndarray, mpp: float) -> np.ndarray: ...


class RgbWindows(Protocol):
    """An RGB image read by window (storage's VirtualHEReader fits)."""

    height_px: int
    width_px: int

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray: ...


class RgbArray:
    """An in-memory (h, w, 3) uint8 image with the window interface."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = np.asarray(rgb)
        self.height_px, self.width_px = (int(s) for s in self.rgb.shape[:2])

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        return self.rgb[y0:y1, x0:x1]


def segment_he_tiles(
    image: RgbWindows, mpp: float, backend: HeSegmenter, tile_px: int = DEFAULT_TILE_PX,
    halo_px: int | None = None, source: str = "H&E image",
) -> Iterator[tuple[Tile, np.ndarray]]:
    """`(tile, int32 block)` of image-wide nucleus labels for every tile core, in grid order.

    halo_px: context around each core in pixels of the image; None = the backend's own hint.
    """
    if tile_px < 64:
        raise ConfigurationError(f"tile_px must be at least 64 pixels, got {tile_px}.")
    halo = int(backend.halo_for(mpp)) if halo_px is None else int(halo_px)
    stitcher = LabelStitcher(image.height_px, image.width_px, tile_px, halo)
    for index, tile in enumerate(stitcher.tiles):
        rgb = np.asarray(image.read(tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1))
        labels = backend.segment_rgb(rgb, mpp)
        if labels.shape != rgb.shape[:2] or not np.issubdtype(labels.dtype, np.integer):
            raise ConfigurationError(
                f"Backend {backend.name!r} returned {labels.dtype} labels shaped {labels.shape} "
                f"for a window shaped {rgb.shape[:2]} of {source}; it must return integer "
                "labels of the window's shape."
            )
        yield tile, stitcher.add(index, labels)


def segment_he_array(rgb: np.ndarray, mpp: float, backend: HeSegmenter,
                     tile_px: int = DEFAULT_TILE_PX, halo_px: int | None = None) -> np.ndarray:
    """int32 labels (h, w) of an in-memory (h, w, 3) uint8 H&E image, tiled and stitched."""
    image = RgbArray(rgb)
    out = np.zeros((image.height_px, image.width_px), dtype=np.int32)
    for tile, block in segment_he_tiles(image, mpp, backend, tile_px, halo_px):
        out[tile.y0:tile.y1, tile.x0:tile.x1] = block
    return out
