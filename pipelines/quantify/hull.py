"""Convex-hull pixel counts of many nuclei at once (as skimage's `area_convex` counts them),
from each row's leftmost and rightmost pixels, for the solidity column.
"""

from __future__ import annotations

import numpy as np

_HULL_BATCH = 4_000_000  # padded (nucleus, row) cells per convex-hull batch


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
