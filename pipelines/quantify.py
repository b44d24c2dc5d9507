"""Per-nucleus features of a whole slide in one streaming pass over its tiles.

For every nucleus of the mask: its stable `nucleus_id`, centroid (px and µm), half-open
bounding box, area, perimeter, eccentricity, solidity, major/minor axis (px) and the mean of
every stain. The columns match skimage's regionprops definitions (centroid = mean pixel
coordinate, axes = 4 sqrt(eigenvalues of the coordinate covariance), perimeter = its 4-connected
weighted border length, solidity = area / pixels of the convex hull).

How it stays fast: each tile's mask is cut into horizontal runs of one label; every stain is
summed over the runs of the nuclei only (a compiled loop when numba is installed, about the
cost of `image.sum()`; otherwise one `np.add.reduceat` per stain), and moments come from the
runs in closed form. Tiles are read strip by strip; a nucleus whose rows all lie above the
strip's last row is finished there (its convex hull counted, its row extents dropped), so only
the nuclei crossing into the next strip keep their rows. Memory: one strip of tiles plus the
per-nucleus sums (about the size of the output table).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from math import sqrt
from typing import Protocol

import numpy as np
import polars as pl

from pipelines.errors import SlideInputError
from pipelines.ids import nucleus_ids
from pipelines.stains import stain_key
from storage.tiles import tile_grid

GEOMETRY_SCHEMA: dict[str, pl.DataType] = {
    "nucleus_id": pl.Int64,
    "slide_id": pl.Utf8,
    "label": pl.Int32,
    "centroid_y_px": pl.Float64,
    "centroid_x_px": pl.Float64,
    "centroid_y_um": pl.Float64,
    "centroid_x_um": pl.Float64,
    "bbox_y0_px": pl.Int32,
    "bbox_x0_px": pl.Int32,
    "bbox_y1_px": pl.Int32,
    "bbox_x1_px": pl.Int32,
    "area_px": pl.Int64,
    "area_um2": pl.Float64,
    "perimeter_px": pl.Float64,
    "eccentricity": pl.Float64,
    "solidity": pl.Float64,
    "major_axis_px": pl.Float64,
    "minor_axis_px": pl.Float64,
}

# skimage.measure.perimeter's weights, indexed by the 3x3 border-neighbourhood code.
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + sqrt(2.0)) / 2.0
_NEIGHBOURS = ((-1, 0, 2), (1, 0, 2), (0, -1, 2), (0, 1, 2),
               (-1, -1, 10), (-1, 1, 10), (1, -1, 10), (1, 1, 10))
_HULL_BATCH = 4_000_000  # padded (nucleus, row) cells per convex-hull batch

try:  # optional: numba sums only the nuclei's pixels, at about the speed of image.sum()
    import numba
except ImportError:  # pragma: no cover - numpy fallback (np.add.reduceat), a few times slower
    numba = None

if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _label_sums_int(image, ry, rx, length, inv, out):  # pragma: no cover - compiled
        for c in range(image.shape[0]):
            for i in range(ry.size):
                row = image[c, ry[i]]
                acc = np.int64(0)
                for k in range(rx[i], rx[i] + length[i]):
                    acc += row[k]
                out[c, inv[i]] += acc

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def _label_sums_float(image, ry, rx, length, inv, out):  # pragma: no cover - compiled
        for c in range(image.shape[0]):
            for i in range(ry.size):
                row = image[c, ry[i]]
                acc = 0.0
                for k in range(rx[i], rx[i] + length[i]):
                    acc += row[k]
                out[c, inv[i]] += acc
    @numba.njit(cache=True, nogil=True)
    def _runs_count(labels):  # pragma: no cover - compiled
        n = 0
        for y in range(labels.shape[0]):
            prev = 0
            for x in range(labels.shape[1]):
                v = labels[y, x]
                if v != 0 and v != prev:
                    n += 1
                prev = v
        return n

    @numba.njit(cache=True, nogil=True)
    def _runs_fill(labels, ry, rx, length, lab):  # pragma: no cover - compiled
        n = -1
        for y in range(labels.shape[0]):
            prev = 0
            for x in range(labels.shape[1]):
                v = labels[y, x]
                if v != 0:
                    if v != prev:
                        n += 1
                        ry[n], rx[n], length[n], lab[n] = y, x, 0, v
                    length[n] += 1
                prev = v
else:  # pragma: no cover
    _label_sums_int = _label_sums_float = _runs_count = _runs_fill = None


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

    tile_px: int = 1024
    shape_features: bool = True


def feature_schema(stains: Sequence[str]) -> dict[str, pl.DataType]:
    """The nucleus_features columns for a slide with these (canonical) stains, in order."""
    return {**GEOMETRY_SCHEMA, **{f"mean_{stain_key(s)}": pl.Float32 for s in stains}}


def empty_features(stains: Sequence[str]) -> pl.DataFrame:
    """A valid zero-row nucleus_features frame (a slide without nuclei)."""
    return pl.DataFrame(schema=feature_schema(stains))


@dataclass
class _Partial:
    """Additive per-nucleus sums (and row extents) for nuclei of one or more tiles."""

    label: np.ndarray  # int64 (n,)
    count: np.ndarray  # float64 (n,)
    sums: np.ndarray  # float64 (n, stains)
    moments: np.ndarray  # float64 (n, 5): sum y, sum x, sum yy, sum xx, sum xy
    bbox: np.ndarray  # int64 (n, 4): ymin, xmin, ymax, xmax (inclusive)
    perimeter: np.ndarray  # float64 (n,)
    rows: tuple[np.ndarray, ...] = field(default=())  # (label, y, x_left, x_right)

    def take(self, keep: np.ndarray) -> _Partial:
        rows = self.rows
        if rows:
            in_keep = np.isin(rows[0], self.label[keep])
            rows = tuple(r[in_keep] for r in rows)
        return _Partial(self.label[keep], self.count[keep], self.sums[keep], self.moments[keep],
                        self.bbox[keep], self.perimeter[keep], rows)


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


def _compact(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct labels and each value's index among them (np.unique without the sort
    when the labels of a tile lie in a narrow range, as stitched labels do)."""
    if values.size == 0:
        return values.astype(np.int64), np.zeros(0, dtype=np.intp)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 4 * values.size + 1024:
        return np.unique(values, return_inverse=True)
    present = np.zeros(hi - lo + 1, dtype=bool)
    present[values - lo] = True
    index = np.cumsum(present) - 1
    return np.flatnonzero(present) + lo, index[values - lo]


def _foreground_runs(labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Horizontal runs of one non-zero label: row, first column, length, label (row-major)."""
    if _runs_count is not None:
        n_runs = _runs_count(labels)
        ry, rx = np.empty(n_runs, np.int64), np.empty(n_runs, np.int64)
        length, lab = np.empty(n_runs, np.int64), np.empty(n_runs, np.int64)
        _runs_fill(labels, ry, rx, length, lab)
        return ry, rx, length, lab
    h, w = labels.shape
    starts_mask = np.empty((h, w), dtype=bool)
    starts_mask[:, 0] = True
    np.not_equal(labels[:, 1:], labels[:, :-1], out=starts_mask[:, 1:])
    starts = np.flatnonzero(starts_mask)
    run_label = labels.ravel()[starts]
    run_length = np.diff(starts, append=h * w)
    fg = run_label != 0
    ry, rx = np.divmod(starts[fg], w)
    return ry, rx, run_length[fg], run_label[fg].astype(np.int64)


def _stain_sums(image, labels, ry, rx, length, inv, n) -> np.ndarray:
    """(n, stains) float64 sums of every stain over each nucleus's runs in this tile."""
    if _label_sums_int is not None:
        image = np.ascontiguousarray(image)  # lets the compiled loop vectorise
        out = np.zeros((image.shape[0], n), dtype=np.float64)
        kernel = _label_sums_int if np.issubdtype(image.dtype, np.integer) else _label_sums_float
        kernel(image, ry, rx, length, inv, out)
        return out.T
    # Every run of the tile, background included, partitions the pixels for np.add.reduceat.
    h, w = labels.shape
    starts_mask = np.empty((h, w), dtype=bool)
    starts_mask[:, 0] = True
    np.not_equal(labels[:, 1:], labels[:, :-1], out=starts_mask[:, 1:])
    starts = np.flatnonzero(starts_mask)
    fg = labels.ravel()[starts] != 0
    acc = _accumulator(image.dtype, w)
    sums = np.empty((n, image.shape[0]), dtype=np.float64)
    for c in range(image.shape[0]):
        run_sum = np.add.reduceat(np.ascontiguousarray(image[c]).ravel(), starts, dtype=acc)
        sums[:, c] = np.bincount(inv, weights=run_sum[fg], minlength=n)
    return sums


def _accumulator(dtype: np.dtype, width: int):
    if np.issubdtype(dtype, np.unsignedinteger) and dtype.itemsize <= 2 and width < 65536:
        return np.uint32
    if np.issubdtype(dtype, np.integer):
        return np.int64
    return np.float64


def measure_tile(
    labels: np.ndarray,
    image: np.ndarray,
    y0: int = 0,
    x0: int = 0,
    padded_labels: np.ndarray | None = None,
) -> _Partial:
    """Additive sums of every nucleus present in one tile (labels (h, w), image (stain, h, w)).

    `padded_labels` is the mask grown by 2 px on each side (zeros outside the slide); it is
    needed for the perimeter and row extents, and skipped (perimeter 0) when None.
    """
    labels = np.ascontiguousarray(labels)
    ry, rx, run_len, run_lab = _foreground_runs(labels)
    label, inv = _compact(run_lab)
    n = label.size
    sums = _stain_sums(image, labels, ry, rx, run_len, inv, n)
    length = run_len.astype(np.float64)
    gy = (ry + y0).astype(np.float64)
    gx = (rx + x0).astype(np.float64)
    sum_x = length * gx + length * (length - 1) / 2
    sum_xx = length * gx * gx + gx * length * (length - 1) + (length - 1) * length * (
        2 * length - 1) / 6
    count = np.bincount(inv, weights=length, minlength=n)
    moments = np.stack([
        np.bincount(inv, weights=length * gy, minlength=n),
        np.bincount(inv, weights=sum_x, minlength=n),
        np.bincount(inv, weights=length * gy * gy, minlength=n),
        np.bincount(inv, weights=sum_xx, minlength=n),
        np.bincount(inv, weights=gy * sum_x, minlength=n),
    ], axis=1)

    run_end = rx + run_len - 1
    order = np.argsort(inv, kind="stable")  # by nucleus, then row-major
    inv_o, ry_o = inv[order], ry[order]
    group = np.flatnonzero(np.r_[True, (inv_o[1:] != inv_o[:-1]) | (ry_o[1:] != ry_o[:-1])])
    row_inv = inv_o[group]
    row_y = ry_o[group] + y0
    row_xl = np.minimum.reduceat(rx[order], group) + x0
    row_xr = np.maximum.reduceat(run_end[order], group) + x0
    first = np.flatnonzero(np.r_[True, row_inv[1:] != row_inv[:-1]])
    last = np.r_[first[1:], row_inv.size] - 1
    bbox = np.stack([row_y[first], np.minimum.reduceat(row_xl, first),
                     row_y[last], np.maximum.reduceat(row_xr, first)], axis=1).astype(np.int64)

    perimeter = np.zeros(n)
    rows: tuple[np.ndarray, ...] = ()
    if padded_labels is not None:
        perimeter = _perimeter(padded_labels, label, n)
        rows = (label[row_inv], row_y.astype(np.int64), row_xl.astype(np.int64),
                row_xr.astype(np.int64))
    return _Partial(label.astype(np.int64), count, sums, moments, bbox, perimeter, rows)


def _perimeter(padded: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    """skimage's weighted border length per label, for the core of a 2-px padded mask."""
    mid = padded[1:-1, 1:-1]
    border = (mid != 0) & (
        (padded[:-2, 1:-1] != mid) | (padded[2:, 1:-1] != mid)
        | (padded[1:-1, :-2] != mid) | (padded[1:-1, 2:] != mid)
    )
    core_border = border[1:-1, 1:-1]
    ys, xs = np.nonzero(core_border)
    if ys.size == 0:
        return np.zeros(n)
    own = padded[ys + 2, xs + 2]
    code = np.ones(ys.size, dtype=np.uint8)
    for dy, dx, weight in _NEIGHBOURS:
        same = border[ys + 1 + dy, xs + 1 + dx] & (padded[ys + 2 + dy, xs + 2 + dx] == own)
        code += np.uint8(weight) * same.astype(np.uint8)
    return np.bincount(np.searchsorted(label, own), weights=_PERIMETER_WEIGHTS[code], minlength=n)


def _concat(parts: Sequence[_Partial]) -> _Partial:
    rows: tuple[np.ndarray, ...] = ()
    if all(p.rows for p in parts):
        rows = tuple(np.concatenate([p.rows[k] for p in parts]) for k in range(4))
    return _Partial(
        np.concatenate([p.label for p in parts]),
        np.concatenate([p.count for p in parts]),
        np.concatenate([p.sums for p in parts]),
        np.concatenate([p.moments for p in parts]),
        np.concatenate([p.bbox for p in parts]),
        np.concatenate([p.perimeter for p in parts]),
        rows,
    )


def _merge(parts: Sequence[_Partial]) -> _Partial:
    """One row per label: partial sums of nuclei cut by tile borders (or labels in pieces
    across tiles) are added, boxes and row extents combined."""
    both = _concat(parts)
    if np.unique(both.label).size == both.label.size:
        return both
    order = np.argsort(both.label, kind="stable")
    lab = both.label[order]
    first = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    bbox = both.bbox[order]
    merged = _Partial(
        lab[first],
        np.add.reduceat(both.count[order], first),
        np.add.reduceat(both.sums[order], first, axis=0),
        np.add.reduceat(both.moments[order], first, axis=0),
        np.stack([np.minimum.reduceat(bbox[:, 0], first), np.minimum.reduceat(bbox[:, 1], first),
                  np.maximum.reduceat(bbox[:, 2], first), np.maximum.reduceat(bbox[:, 3], first)],
                 axis=1),
        np.add.reduceat(both.perimeter[order], first),
    )
    if both.rows:
        rl, ry, xl, xr = both.rows
        o = np.lexsort((ry, rl))
        rl, ry, xl, xr = rl[o], ry[o], xl[o], xr[o]
        g = np.flatnonzero(np.r_[True, (rl[1:] != rl[:-1]) | (ry[1:] != ry[:-1])])
        merged.rows = (rl[g], ry[g], np.minimum.reduceat(xl, g), np.maximum.reduceat(xr, g))
    return merged


def _features(
    part: _Partial, slide_id: str, mpp: float, stains: Sequence[str],
    hull_px: np.ndarray | None,
) -> pl.DataFrame:
    """Feature frame of merged nuclei sorted by label; hull_px aligned with part.label."""
    p = part
    count = p.count
    sy, sx, syy, sxx, sxy = (p.moments[:, k] / count for k in range(5))
    cy, cx = sy, sx
    mu_yy = np.maximum(syy - cy * cy, 0.0)
    mu_xx = np.maximum(sxx - cx * cx, 0.0)
    mu_xy = sxy - cy * cx
    half_trace = (mu_yy + mu_xx) / 2
    root = np.sqrt(((mu_yy - mu_xx) / 2) ** 2 + mu_xy * mu_xy)
    l1, l2 = half_trace + root, np.maximum(half_trace - root, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eccentricity = np.where(l1 > 0, np.sqrt(np.clip(1 - l2 / l1, 0, 1)), 0.0)
        means = (p.sums / count[:, None]).astype(np.float32)
    if hull_px is not None:
        solidity = count / hull_px
        perimeter = p.perimeter
    else:
        solidity = perimeter = np.full(count.size, np.nan)
    columns = {
        "nucleus_id": nucleus_ids(slide_id, p.label),
        "slide_id": np.full(count.size, slide_id, dtype=object),
        "label": p.label.astype(np.int32),
        "centroid_y_px": cy,
        "centroid_x_px": cx,
        "centroid_y_um": cy * mpp,
        "centroid_x_um": cx * mpp,
        "bbox_y0_px": p.bbox[:, 0].astype(np.int32),
        "bbox_x0_px": p.bbox[:, 1].astype(np.int32),
        "bbox_y1_px": (p.bbox[:, 2] + 1).astype(np.int32),
        "bbox_x1_px": (p.bbox[:, 3] + 1).astype(np.int32),
        "area_px": count.astype(np.int64),
        "area_um2": count * mpp * mpp,
        "perimeter_px": perimeter,
        "eccentricity": eccentricity,
        "solidity": solidity,
        "major_axis_px": 4 * np.sqrt(l1),
        "minor_axis_px": 4 * np.sqrt(l2),
    }
    for k, stain in enumerate(stains):
        columns[f"mean_{stain_key(stain)}"] = means[:, k]
    return pl.DataFrame(columns, schema=feature_schema(stains))


def convex_areas(
    label: np.ndarray, row_y: np.ndarray, row_xl: np.ndarray, row_xr: np.ndarray,
    *, rows_label: np.ndarray,
) -> np.ndarray:
    """Pixels of each nucleus's convex hull (as skimage's `area_convex` counts them).

    The hull of a pixel set is the hull of the diamond corners of each row's leftmost and
    rightmost pixels; it is built for all nuclei at once, row by row (monotone chain in
    lockstep), and its pixel centres are counted row by row. `label` must be sorted; the row
    table (rows_label, row_y, row_xl, row_xr) is sorted by label then row.
    """
    n = label.size
    first = np.searchsorted(rows_label, label)
    stop = np.r_[first[1:], rows_label.size]
    y_min, y_max = row_y[first], row_y[stop - 1]
    span = (y_max - y_min + 1).astype(np.int64)
    out = np.zeros(n, dtype=np.float64)
    order = np.argsort(span, kind="stable")
    start = 0
    while start < n:
        end = start
        while end < n and (end - start + 1) * span[order[end]] <= _HULL_BATCH:
            end += 1
        end = max(end, start + 1)
        idx = order[start:end]
        out[idx] = _hull_pixels(idx, first, stop, y_min, span, row_y, row_xl, row_xr)
        start = end
    return out


def _hull_pixels(idx, first, stop, y_min, span, row_y, row_xl, row_xr) -> np.ndarray:
    m, rmax = idx.size, int(span[idx].max())
    xl = np.full((m, rmax), np.nan)
    xr = np.full((m, rmax), np.nan)
    counts = (stop[idx] - first[idx]).astype(np.int64)
    owner = np.repeat(np.arange(m), counts)
    rows = _ranges(first[idx], counts)
    r = row_y[rows] - y_min[idx][owner]
    xl[owner, r] = row_xl[rows]
    xr[owner, r] = row_xr[rows]
    n_rows = span[idx]
    if np.isnan(xl[np.arange(rmax)[None, :] < n_rows[:, None]]).any():
        _fill_missing_rows(xl, xr, n_rows)
    right = _upper_hull_at_rows(_chain_points(xr, n_rows), n_rows)
    left = -_upper_hull_at_rows(_chain_points(-xl, n_rows), n_rows)
    valid = np.arange(rmax)[None, :] < n_rows[:, None]
    width = np.floor(right + 1e-9) - np.ceil(left - 1e-9) + 1
    return np.where(valid, np.maximum(width, 0), 0).sum(axis=1)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges [s, s + c) for each (s, c)."""
    total = int(counts.sum())
    offsets = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts)
    return offsets + np.arange(total)


def _fill_missing_rows(xl: np.ndarray, xr: np.ndarray, n_rows: np.ndarray) -> None:
    """Rows a nucleus skips get points interpolated between its rows above and below (inside
    the hull, so the hull is unchanged)."""
    for i in np.flatnonzero(np.isnan(xl).any(axis=1)):
        k = int(n_rows[i])
        have = ~np.isnan(xl[i, :k])
        if have.all():
            continue
        at = np.arange(k)
        xl[i, :k] = np.interp(at, at[have], xl[i, :k][have])
        xr[i, :k] = np.interp(at, at[have], xr[i, :k][have])


def _chain_points(xr: np.ndarray, n_rows: np.ndarray) -> np.ndarray:
    """Values of the right-side hull candidates at t = 0, 1/2, 1, ... (rows at odd indices).

    Row r contributes its right extreme's diamond corners: (r - 1/2, xr), (r, xr + 1/2),
    (r + 1/2, xr); shared half-rows take the larger of the two rows.
    """
    m, rmax = xr.shape
    values = np.full((m, 2 * rmax + 1), -np.inf)
    values[:, 1::2] = xr + 0.5
    upper = np.where(np.isnan(xr), -np.inf, xr)
    values[:, 0:-1:2] = upper
    values[:, 2::2] = np.maximum(values[:, 2::2], upper)
    # Half-row after the last row of each nucleus: only that row's corner.
    last = n_rows - 1
    values[np.arange(m), 2 * n_rows] = xr[np.arange(m), last]
    return values


def _upper_hull_at_rows(values: np.ndarray, n_rows: np.ndarray) -> np.ndarray:
    """Upper hull of points (k, values[:, k]) evaluated at odd k (pixel-centre rows)."""
    m, k_max = values.shape
    n_points = 2 * n_rows + 1
    stack = np.zeros((m, k_max), dtype=np.int64)
    size = np.zeros(m, dtype=np.int64)
    every = np.arange(m)
    for k in range(k_max):
        active = k < n_points
        while True:
            cand = every[active & (size >= 2)]
            if cand.size == 0:
                break
            a = stack[cand, size[cand] - 2]
            b = stack[cand, size[cand] - 1]
            va, vb, vk = values[cand, a], values[cand, b], values[cand, k]
            pop = (b - a) * (vk - va) - (vb - va) * (k - a) >= 0
            if not pop.any():
                break
            size[cand[pop]] -= 1
        act = every[active]
        stack[act, size[act]] = k
        size[act] += 1
    on_hull = np.zeros((m, k_max), dtype=bool)
    cols = np.arange(k_max)[None, :]
    in_stack = cols < size[:, None]
    on_hull[np.repeat(every, size), stack[in_stack]] = True
    prev = np.maximum.accumulate(np.where(on_hull, cols, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(on_hull, cols, k_max)[:, ::-1], axis=1)[:, ::-1]
    odd = np.arange(1, k_max, 2)
    p = np.clip(prev[:, odd], 0, k_max - 1)
    q = np.clip(nxt[:, odd], 0, k_max - 1)
    vp = np.take_along_axis(values, p, axis=1)
    vq = np.take_along_axis(values, q, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(q > p, (odd[None, :] - p) / np.maximum(q - p, 1), 0.0)
        result = vp + (vq - vp) * frac
    return result


def feature_checks(frame: pl.DataFrame, min_area_um2: float = 3.0,
                   max_area_um2: float = 1000.0) -> dict[str, tuple[bool, dict[str, object]]]:
    """Sanity of a slide's features: name -> (passed, details).

    nucleus_count_positive: at least one nucleus; no_nan_intensities: every mean_* is finite;
    plausible_areas: the median nucleus area lies in [min_area_um2, max_area_um2] µm².
    """
    means = [c for c in frame.columns if c.startswith("mean_")]
    nan_rows = frame.select(
        pl.any_horizontal([pl.col(c).is_nan() | pl.col(c).is_null() for c in means]).sum()
    ).item() if (means and frame.height) else 0
    median_area = float(frame["area_um2"].median()) if frame.height else float("nan")
    return {
        "nucleus_count_positive": (frame.height > 0, {"n_nuclei": frame.height}),
        "no_nan_intensities": (nan_rows == 0, {"rows_with_nan": int(nan_rows)}),
        "plausible_areas": (
            frame.height > 0 and min_area_um2 <= median_area <= max_area_um2,
            {"median_area_um2": round(median_area, 2) if frame.height else None,
             "allowed_um2": f"{min_area_um2}-{max_area_um2}"},
        ),
    }
