"""The `import` backend: a user's own nucleus masks, checked against the slide and made int32.

Labels are kept as they are when they fit int32 (so a nucleus can be traced back to the user's
mask); masks whose labels exceed int32 (uint32/uint64/int64 ids) are renumbered 1..N in label
order, which needs one extra read of the mask to collect its labels. Float, boolean and negative
labels are refused: they are not instance masks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipelines.errors import SlideInputError
from pipelines.segment.base import LabelSource
from storage.tiles import Tile, tile_grid

INT32_MAX = np.iinfo(np.int32).max


class ImportedBlocks:
    """Iterate `(tile, int32 labels)` over an imported mask; `n_nuclei` is known afterwards."""

    def __init__(self, source: LabelSource, slide_id: str, height_px: int, width_px: int,
                 tile_px: int) -> None:
        check_imported(source, slide_id, height_px, width_px)
        self.source, self.slide_id = source, slide_id
        self.tiles = list(tile_grid(height_px, width_px, tile_px))
        self.n_nuclei = 0
        self.relabelled = False

    def __iter__(self) -> Iterator[tuple[Tile, np.ndarray]]:
        lookup = None
        if self.source.dtype.itemsize >= 4 and self.source.dtype != np.int32:
            labels = self._all_labels()
            if labels.size and labels[-1] > INT32_MAX:
                lookup, self.relabelled = labels, True
        seen: list[np.ndarray] = []
        for tile in self.tiles:
            block = self.source.read(tile.y0, tile.x0, tile.y1, tile.x1)
            if block.size and np.issubdtype(block.dtype, np.signedinteger) and block.min() < 0:
                raise SlideInputError(self._negative())
            if lookup is not None:
                block = np.where(block == 0, 0, np.searchsorted(lookup, block) + 1)
            block = block.astype(np.int32, copy=False)
            seen.append(np.unique(block[block != 0]))
            yield tile, block
        self.n_nuclei = int(np.unique(np.concatenate(seen)).size) if seen else 0

    def _all_labels(self) -> np.ndarray:
        found: list[np.ndarray] = []
        for tile in self.tiles:
            block = self.source.read(tile.y0, tile.x0, tile.y1, tile.x1)
            if np.issubdtype(block.dtype, np.signedinteger) and block.size and block.min() < 0:
                raise SlideInputError(self._negative())
            found.append(np.unique(block[block != 0]))
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)

    def _negative(self) -> str:
        return (f"Imported mask {self.source.description} for slide {self.slide_id!r} has "
                "negative labels; labels must be 0 (background) or positive nucleus ids.")


def check_imported(source: LabelSource, slide_id: str, height_px: int, width_px: int) -> None:
    """Refuse a mask that does not lie on the slide's grid or does not hold integer labels."""
    if tuple(source.shape) != (height_px, width_px):
        raise SlideInputError(
            f"Imported mask {source.description} is {source.shape[0]}x{source.shape[1]} px but "
            f"slide {slide_id!r} is {height_px}x{width_px} px; import the mask made on this "
            "slide's full-resolution image."
        )
    if source.dtype == np.bool_ or not np.issubdtype(source.dtype, np.integer):
        raise SlideInputError(
            f"Imported mask {source.description} for slide {slide_id!r} holds {source.dtype} "
            "values; an instance mask needs integer labels (0 = background, one id per nucleus). "
            "Label a binary mask first (e.g. skimage.measure.label)."
        )


def imported_blocks(source: LabelSource, slide_id: str, height_px: int, width_px: int,
                    tile_px: int) -> ImportedBlocks:
    return ImportedBlocks(source, slide_id, height_px, width_px, tile_px)
