"""The `import` backend: a user's own nucleus masks, checked against the slide and made int32.

Labels are kept as they are when they fit int32 (so a nucleus can be traced back to the user's
mask); masks whose labels exceed int32 (uint32/uint64/int64 ids) are renumbered 1..N in label
order, which needs one extra read of the mask to collect its labels. Float, boolean and negative
labels are refused: they are not instance masks. So is a mask that looks binary (one label value,
larger than one nucleus can be) or has one label covering most of the slide, unless
`binary_mask="connected_components"`, which labels its foreground by connected components
(stitched across tiles like a segmentation) instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from pipelines.errors import SlideInputError
from pipelines.segment.base import LabelSource
from pipelines.segment.stitching import LabelStitcher
from storage.tiles import Tile, tile_grid

INT32_MAX = np.iinfo(np.int32).max
BinaryMask = Literal["refuse", "connected_components"]
# One nucleus is no larger than this (the bound of quantify's plausible_areas check) ...
MAX_NUCLEUS_AREA_UM2 = 1000.0
# ... nor wider than this (sets the halo when a binary mask is labelled by connected components).
MAX_NUCLEUS_DIAMETER_UM = 40.0
# No single label of an instance mask covers this share of the slide.
MAX_LABEL_SHARE = 0.5


class ImportedBlocks:
    """Iterate `(tile, int32 labels)` over an imported mask; `n_nuclei` is known afterwards."""

    def __init__(self, source: LabelSource, slide_id: str, height_px: int, width_px: int,
                 tile_px: int, mpp: float | None = None, binary_mask: BinaryMask = "refuse"
                 ) -> None:
        check_imported(source, slide_id, height_px, width_px)
        if binary_mask not in ("refuse", "connected_components"):
            raise SlideInputError(
                f"binary_mask is {binary_mask!r}; use 'refuse' or 'connected_components'."
            )
        self.source, self.slide_id = source, slide_id
        self.height_px, self.width_px, self.tile_px = height_px, width_px, tile_px
        self.mpp, self.binary_mask = mpp, binary_mask
        self.tiles = list(tile_grid(height_px, width_px, tile_px))
        self.n_nuclei = 0
        self.relabelled = False
        self.connected_components = False

    def __iter__(self) -> Iterator[tuple[Tile, np.ndarray]]:
        if self.binary_mask == "connected_components":
            areas = _LabelAreas()
            for tile in self.tiles:
                areas.add(self.source.read(tile.y0, tile.x0, tile.y1, tile.x1))
            if self._not_instances(areas):
                yield from self._connected()
                return
        areas = _LabelAreas()
        for tile, block in self._labels():
            areas.add(block)
            yield tile, block
        problem = self._not_instances(areas)
        if problem:  # raised before the caller's mask store is published
            raise SlideInputError(
                f"Imported mask {self.source.description} for slide {self.slide_id!r} {problem}: "
                "it is not one label per nucleus. Label a binary mask first (e.g. "
                "skimage.measure.label), or set binary_mask: connected_components in the "
                "nucleus_mask config to label it by connected components."
            )

    def _not_instances(self, areas: _LabelAreas) -> str:
        """Why the mask looks binary or holds a slide-sized label; empty when it looks fine."""
        labels, counts = areas.totals()
        if not labels.size:
            return ""
        slide_px = self.height_px * self.width_px
        biggest = int(np.argmax(counts))
        share = counts[biggest] / slide_px
        if labels.size == 1 and self.mpp and counts[0] * self.mpp**2 > MAX_NUCLEUS_AREA_UM2:
            return (
                f"has one label value ({int(labels[0])}) covering {int(counts[0])} px "
                f"({counts[0] * self.mpp**2:.0f} µm², {share:.0%} of the slide), more than one "
                f"nucleus ({MAX_NUCLEUS_AREA_UM2:g} µm²): it looks like a binary mask"
            )
        if share > MAX_LABEL_SHARE:
            return (f"has label {int(labels[biggest])} covering {share:.0%} of the slide")
        return ""

    def _connected(self) -> Iterator[tuple[Tile, np.ndarray]]:
        """The foreground (label != 0) labelled by connected components, stitched across tiles."""
        halo = math.ceil(MAX_NUCLEUS_DIAMETER_UM / self.mpp) if self.mpp else 64
        stitcher = LabelStitcher(self.height_px, self.width_px, self.tile_px, halo)
        for index, tile in enumerate(stitcher.tiles):
            window = self.source.read(tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1)
            labels, _ = ndi.label(window != 0)
            yield tile, stitcher.add(index, labels.astype(np.int32, copy=False))
        self.n_nuclei = stitcher.n_labels
        self.connected_components = True

    def _labels(self) -> Iterator[tuple[Tile, np.ndarray]]:
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


class _LabelAreas:
    """Pixel count per label, summed over blocks (background excluded)."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, block: np.ndarray) -> None:
        labels, counts = np.unique(block[block != 0], return_counts=True)
        self._parts.append((labels, counts))
        if len(self._parts) >= 64:
            self._parts = [self.totals()]

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        labels = np.concatenate([p[0] for p in self._parts])
        counts = np.concatenate([p[1] for p in self._parts])
        unique, inverse = np.unique(labels, return_inverse=True)
        return unique, np.bincount(inverse, weights=counts, minlength=unique.size).astype(np.int64)


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
                    tile_px: int, mpp: float | None = None, binary_mask: BinaryMask = "refuse"
                    ) -> ImportedBlocks:
    return ImportedBlocks(source, slide_id, height_px, width_px, tile_px, mpp, binary_mask)
