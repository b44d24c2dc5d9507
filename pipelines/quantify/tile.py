"""Additive per-nucleus sums of one tile (count, stain sums, moments, box, perimeter, row
extents), and their merge across tiles for nuclei cut by tile borders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import sqrt

import numpy as np

from pipelines.quantify.runs import _compact, _foreground_runs, _stain_sums

# skimage.measure.perimeter's weights, indexed by the 3x3 border-neighbourhood code.
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + sqrt(2.0)) / 2.0
_NEIGHBOURS = ((-1, 0, 2), (1, 0, 2), (0, -1, 2), (0, 1, 2),
               (-1, -1, 10), (-1, 1, 10), (1, -1, 10), (1, 1, 10))


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
