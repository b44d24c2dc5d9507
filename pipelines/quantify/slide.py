"""The streaming pass over a slide's tiles, strip by strip: nuclei finished above a strip's last
row are closed there (hull counted, rows dropped) and given out as that strip's feature rows, so
memory stays about one strip whatever the number of nuclei.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import polars as pl

from pipelines.errors import SlideInputError
from pipelines.quantify.columns import _features, empty_features
from pipelines.quantify.hull import convex_areas
from pipelines.quantify.tile import _merge, _Partial, measure_tile
from storage.tiles import DEFAULT_TILE_PX, tile_grid


class SlideTiles(Protocol):
    """What the pass reads from the slide (storage's SlideReader fits)."""

    @property
    def info(self): ...

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray: ...


class MaskTiles(Protocol):
    """What the pass reads from the mask (storage's MaskReader fits)."""

    height_px: int
    width_px: int

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray: ...


@dataclass(frozen=True)
class QuantifyParams:
    """tile_px: tile side of the streaming pass; shape_features: perimeter and solidity (the
    rest of the shape comes free from moments); off, those two columns are NaN."""

    tile_px: int = DEFAULT_TILE_PX
    shape_features: bool = True


@dataclass
class SlideFeatures:
    """Iterate for nucleus_features frames, one per strip of tiles top to bottom: the nuclei
    finished in that strip, by label. Each nucleus is given once, in the first strip that
    reads a row below its last one, so a writer can stream the frames out as they come.

    A label met again after its row was given (a label in pieces apart by whole rows, as an
    imported mask may have) is listed in `revisit`; afterwards `revise(rows)` recomputes those
    rows from the mask and the slide, to replace the ones given. Held between strips: the
    nuclei still open, the ranges of labels given so far and the revisit boxes.
    """

    slide: SlideTiles
    mask: MaskTiles
    params: QuantifyParams = QuantifyParams()
    n_nuclei: int = 0
    # label -> inclusive box (ymin, xmin, ymax, xmax) of its pieces met after its row was given
    revisit: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        info, mask = self.slide.info, self.mask
        if (mask.height_px, mask.width_px) != (info.height_px, info.width_px):
            raise SlideInputError(
                f"Mask of slide {info.slide_id!r} is {mask.height_px}x{mask.width_px} px but the "
                f"slide is {info.height_px}x{info.width_px} px; re-run nucleus_mask for this "
                "slide."
            )

    def __iter__(self) -> Iterator[pl.DataFrame]:
        info = self.slide.info
        given = _LabelRanges()
        for strip in closed_strips(self.slide, self.mask, self.params):
            part, hull = strip.part, strip.hull_px
            again = given.contains(part.label)
            for k in np.flatnonzero(again):
                self._note_piece(int(part.label[k]), part.bbox[k])
            order = np.flatnonzero(~again)
            order = order[np.argsort(part.label[order], kind="stable")]
            if not order.size:
                continue
            part, hull = part.take(order), hull[order]
            given.add(part.label)
            self.n_nuclei += int(part.label.size)
            yield _features(part, info.slide_id, info.mpp, info.stains,
                            hull if self.params.shape_features else None)

    def _note_piece(self, label: int, bbox: np.ndarray) -> None:
        box = self.revisit.get(label)
        self.revisit[label] = bbox.copy() if box is None else np.r_[
            np.minimum(box[:2], bbox[:2]), np.maximum(box[2:], bbox[2:])]

    def revise(self, given: pl.DataFrame) -> pl.DataFrame:
        """The rows of `revisit`'s labels measured whole, from `given` (their rows as given:
        the first pieces' boxes) and the boxes of the later pieces, by label."""
        info = self.slide.info
        halo = 2 if self.params.shape_features else 0
        frames = []
        for row in given.sort("label").iter_rows(named=True):
            label = int(row["label"])
            later = self.revisit[label]
            y0, x0 = int(min(row["bbox_y0_px"], later[0])), int(min(row["bbox_x0_px"], later[1]))
            y1 = int(max(row["bbox_y1_px"], later[2] + 1))
            x1 = int(max(row["bbox_x1_px"], later[3] + 1))
            padded = _read_padded(self.mask, y0, x0, y1, x1, halo)
            padded = np.where(padded == label, padded, 0)
            labels = padded[halo : padded.shape[0] - halo, halo : padded.shape[1] - halo]
            image = np.asarray(self.slide.read(y0, x0, y1, x1))
            part = measure_tile(labels, image, y0, x0, padded if halo else None)
            hull = None
            if halo:
                rl, ry, xl, xr = part.rows
                hull = convex_areas(part.label, ry, xl, xr, rows_label=rl)
            frames.append(_features(part, info.slide_id, info.mpp, info.stains, hull))
        return pl.concat(frames) if frames else empty_features(info.stains)


class _LabelRanges:
    """A set of labels as sorted disjoint [start, stop) ranges. Strips give labels out in about
    the order a stitched mask numbers them (first seen, tile by tile), so the ranges are about
    as many as the nuclei still open, not as the nuclei given; labels given in no order (an
    imported mask's) cost 16 bytes a range at worst."""

    def __init__(self) -> None:
        self.start = np.zeros(0, dtype=np.int64)
        self.stop = np.zeros(0, dtype=np.int64)

    def contains(self, labels: np.ndarray) -> np.ndarray:
        if not self.start.size:
            return np.zeros(labels.shape, dtype=bool)
        at = np.searchsorted(self.start, labels, side="right") - 1
        return (at >= 0) & (labels < self.stop[np.maximum(at, 0)])

    def add(self, labels: np.ndarray) -> None:
        """Add sorted distinct labels."""
        if not labels.size:
            return
        cut = np.flatnonzero(np.diff(labels) != 1) + 1
        start = np.concatenate([self.start, labels[np.r_[0, cut]]])
        stop = np.concatenate([self.stop, labels[np.r_[cut - 1, labels.size - 1]] + 1])
        order = np.argsort(start, kind="stable")
        start, stop = start[order], stop[order]
        reach = np.maximum.accumulate(stop)
        first = np.flatnonzero(np.r_[True, start[1:] > reach[:-1]])
        self.start, self.stop = start[first], np.maximum.reduceat(stop, first)

    def __len__(self) -> int:
        return int(self.start.size)


def quantify_slide(
    slide: SlideTiles, mask: MaskTiles, params: QuantifyParams = QuantifyParams()
) -> pl.DataFrame:
    """nucleus_features of one slide in memory (rows ordered by label); empty-but-typed
    without nuclei. For whole slides, stream `SlideFeatures` to storage instead."""
    features = SlideFeatures(slide, mask, params)
    frames = list(features)
    if not frames:
        return empty_features(slide.info.stains)
    frame = pl.concat(frames)
    if features.revisit:
        again = pl.col("label").is_in(list(features.revisit))
        frame = pl.concat([frame.filter(~again), features.revise(frame.filter(again))])
    return frame.sort("label")


@dataclass
class ClosedStrip:
    """Nuclei finished after one strip of tiles: their sums (no row extents), convex hull
    pixels (NaN without shape features) and how many nuclei stay open into later strips."""

    part: _Partial
    hull_px: np.ndarray
    open_nuclei: int
    open_rows: int


def closed_strips(
    slide: SlideTiles, mask: MaskTiles, params: QuantifyParams = QuantifyParams()
) -> Iterator[ClosedStrip]:
    """One pass over the tile strips. A nucleus whose rows all lie above the strip's last row
    is finished (hull counted, rows dropped); only those touching that row stay open, so the
    row extents held never exceed about one strip's nuclei."""
    open_part: _Partial | None = None
    height = mask.height_px
    for y1, tiles in _strips(slide, mask, params):
        parts = ([open_part] if open_part is not None else []) + [t for t in tiles if t.label.size]
        if not parts:
            continue
        strip = _merge(parts)
        done = (strip.bbox[:, 2] < y1 - 1) | (y1 >= height)
        finished, open_part = strip.take(np.flatnonzero(done)), strip.take(np.flatnonzero(~done))
        hull = np.full(finished.label.size, np.nan)
        if finished.rows and finished.label.size:
            order = np.argsort(finished.label, kind="stable")
            finished = finished.take(order)
            o = np.lexsort((finished.rows[1], finished.rows[0]))
            rl, ry, xl, xr = (r[o] for r in finished.rows)
            hull = convex_areas(finished.label, ry, xl, xr, rows_label=rl)
        finished.rows = ()
        yield ClosedStrip(finished, hull, int(open_part.label.size),
                          int(open_part.rows[0].size) if open_part.rows else 0)


def _strips(
    slide: SlideTiles, mask: MaskTiles, params: QuantifyParams
) -> Iterator[tuple[int, list[_Partial]]]:
    """(strip end row, partials of its tiles) for each row of tiles, top to bottom."""
    height, width = mask.height_px, mask.width_px
    halo = 2 if params.shape_features else 0
    current: list[_Partial] = []
    strip_y1 = None
    for tile in tile_grid(height, width, params.tile_px, 0):
        if strip_y1 is not None and tile.y1 != strip_y1:
            yield strip_y1, current
            current = []
        strip_y1 = tile.y1
        padded = _read_padded(mask, tile.y0, tile.x0, tile.y1, tile.x1, halo)
        labels = padded[halo : padded.shape[0] - halo, halo : padded.shape[1] - halo]
        if not labels.any():
            continue
        image = np.asarray(slide.read(tile.y0, tile.x0, tile.y1, tile.x1))
        current.append(measure_tile(labels, image, tile.y0, tile.x0, padded if halo else None))
    if strip_y1 is not None:
        yield strip_y1, current


def _read_padded(mask: MaskTiles, y0: int, x0: int, y1: int, x1: int, halo: int) -> np.ndarray:
    ry0, rx0 = max(0, y0 - halo), max(0, x0 - halo)
    ry1, rx1 = min(mask.height_px, y1 + halo), min(mask.width_px, x1 + halo)
    block = np.asarray(mask.read(ry0, rx0, ry1, rx1))
    if not halo:
        return block
    return np.pad(block, ((ry0 - (y0 - halo), (y1 + halo) - ry1),
                          (rx0 - (x0 - halo), (x1 + halo) - rx1)))
