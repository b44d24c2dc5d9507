"""Horizontal runs of one label in a tile, and every stain summed over each nucleus's runs:
a compiled loop when numba is installed, one `np.add.reduceat` per stain otherwise.
"""

from __future__ import annotations

import numpy as np

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
