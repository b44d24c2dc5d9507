"""The streaming pass over a slide's tiles, strip by strip: nuclei finished above a strip's last
row are closed there (hull counted, rows dropped), so memory stays about one strip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


def quantify_slide(
    slide: SlideTiles, mask: MaskTiles, params: QuantifyParams = QuantifyParams()
) -> pl.DataFrame:
    """nucleus_features of one slide (rows ordered by label); empty-but-typed without nuclei."""
    info = slide.info
    if (mask.height_px, mask.width_px) != (info.height_px, info.width_px):
        raise SlideInputError(
            f"Mask of slide {info.slide_id!r} is {mask.height_px}x{mask.width_px} px but the "
            f"slide is {info.height_px}x{info.width_px} px; re-run nucleus_mask for this slide."
        )
    closed = list(closed_strips(slide, mask, params))
    parts = [c.part for c in closed if c.part.label.size]
    if not parts:
        return empty_features(info.stains)
    merged = _merge(parts)
    merged = merged.take(np.argsort(merged.label, kind="stable"))
    hull = None
    if params.shape_features:
        hull = _hull_by_label(merged.label, [c for c in closed if c.part.label.size], mask)
    return _features(merged, info.slide_id, info.mpp, info.stains, hull)


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


def _hull_by_label(label: np.ndarray, closed: Sequence[ClosedStrip], mask: MaskTiles) -> np.ndarray:
    """Hull pixels per (sorted) label. A label finished in more than one strip (pieces apart
    by whole rows) is recounted from the mask inside its bounding box."""
    names = np.concatenate([c.part.label for c in closed])
    hull = np.concatenate([c.hull_px for c in closed])
    uniq, first, counts = np.unique(names, return_index=True, return_counts=True)
    out = hull[first][np.searchsorted(uniq, label)]
    for lab in uniq[counts > 1]:
        bbox = np.concatenate([c.part.bbox[c.part.label == lab] for c in closed])
        y0, x0 = bbox[:, 0].min(), bbox[:, 1].min()
        y1, x1 = bbox[:, 2].max() + 1, bbox[:, 3].max() + 1
        window = np.asarray(mask.read(int(y0), int(x0), int(y1), int(x1))) == lab
        ys = np.flatnonzero(window.any(axis=1))
        xl = window[ys].argmax(axis=1)
        xr = window.shape[1] - 1 - window[ys, ::-1].argmax(axis=1)
        one = np.array([lab], dtype=np.int64)
        out[np.searchsorted(label, lab)] = convex_areas(
            one, (ys + y0).astype(np.int64), (xl + x0).astype(np.int64),
            (xr + x0).astype(np.int64), rows_label=np.full(ys.size, lab, dtype=np.int64))[0]
    return out


def _read_padded(mask: MaskTiles, y0: int, x0: int, y1: int, x1: int, halo: int) -> np.ndarray:
    ry0, rx0 = max(0, y0 - halo), max(0, x0 - halo)
    ry1, rx1 = min(mask.height_px, y1 + halo), min(mask.width_px, x1 + halo)
    block = np.asarray(mask.read(ry0, rx0, ry1, rx1))
    if not halo:
        return block
    return np.pad(block, ((ry0 - (y0 - halo), (y1 + halo) - ry1),
                          (rx0 - (x0 - halo), (x1 + halo) - rx1)))
