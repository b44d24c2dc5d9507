"""Whole-slide labels from per-window segmentations, without splitting or duplicating nuclei.

Each tile's window (core + halo) is segmented on its own. A tile writes only its core, with its
own segmentation, but a nucleus that reaches into a neighbouring core takes one slide-wide
label: the first tile (in row-major order) whose core it touches gives it a new label and
registers the nucleus's pixels for the later neighbours whose cores it touches. A later tile
matches each of its own segments to those registered nuclei by overlap (at least half of the
smaller of the two), so both sides of a border carry the same label. Only the registrations
for tiles not yet processed are held in memory (halo-wide strips of border nuclei), so memory
does not grow with the slide's height. Labels are 1..N in the order nuclei are first seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storage.tiles import Tile, tile_grid

MIN_OVERLAP = 0.5


@dataclass
class _Registration:
    flat_index: np.ndarray  # int64, flat index within the destination tile's window
    label: np.ndarray  # int32 slide-wide label


def _intersect(a: tuple[int, int, int, int], b: tuple[int, int, int, int]):
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[2], b[2]), min(a[3], b[3])
    return (y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None


def _relative(box: tuple[int, int, int, int], window: tuple[int, int, int, int]):
    return box[0] - window[0], box[1] - window[1], box[2] - window[0], box[3] - window[1]


def _window(tile: Tile) -> tuple[int, int, int, int]:
    return tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1


def _core(tile: Tile) -> tuple[int, int, int, int]:
    return tile.y0, tile.x0, tile.y1, tile.x1


class LabelStitcher:
    """Turns window labels into core blocks of slide-wide labels, tile by tile, in grid order."""

    def __init__(self, height_px: int, width_px: int, tile_px: int, halo_px: int) -> None:
        self.tiles = list(tile_grid(height_px, width_px, tile_px, halo_px))
        self.n_labels = 0
        self._pending: dict[int, list[_Registration]] = {}
        self._next = 0
        n_cols = -(-width_px // tile_px)
        reach = -(-2 * halo_px // tile_px)  # windows of tiles this many apart may overlap
        self._later: list[list[int]] = []
        for i, t in enumerate(self.tiles):
            r, c = divmod(i, n_cols)
            later = []
            for rr in range(r, r + reach + 1):
                for cc in range(max(0, c - reach), min(n_cols, c + reach + 1)):
                    j = rr * n_cols + cc
                    if i < j < len(self.tiles) and _intersect(_window(t), _window(self.tiles[j])):
                        later.append(j)
            self._later.append(later)

    def add(self, index: int, window_labels: np.ndarray) -> np.ndarray:
        """The core block (int32, slide-wide labels) of tile `index` from its window's labels."""
        if index != self._next:
            raise ValueError(f"Tiles go in grid order: expected {self._next}, got {index}.")
        self._next += 1
        tile = self.tiles[index]
        win = _window(tile)
        wh, ww = win[2] - win[0], win[3] - win[1]
        local = np.asarray(window_labels)
        if local.shape != (wh, ww):
            raise ValueError(f"Window labels shaped {local.shape}, expected {(wh, ww)} for {tile}.")
        core = tile.core_in_window
        in_core = np.unique(local[core])
        in_core = in_core[in_core != 0]
        regs = self._pending.pop(index, [])
        mapping = self._match(local, in_core, regs, wh, ww)
        # Segments that match nothing registered are new nuclei.
        new = np.array([s for s in in_core if s not in mapping], dtype=np.int64)
        for k, s in enumerate(new):
            mapping[int(s)] = self.n_labels + 1 + k
        self.n_labels += len(new)
        lut_size = int(local.max()) + 1 if local.size else 1
        lut = np.zeros(lut_size, dtype=np.int32)
        for s, g in mapping.items():
            lut[s] = g
        global_window = lut[local]
        self._register(index, global_window)
        return np.ascontiguousarray(global_window[core])

    def _match(self, local, in_core, regs, wh, ww) -> dict[int, int]:
        if not regs or in_core.size == 0:
            return {}
        registered = np.zeros(wh * ww, dtype=np.int32)
        for reg in regs:
            registered[reg.flat_index] = reg.label
        flat = local.ravel()
        both = (flat != 0) & (registered != 0)
        if not both.any():
            return {}
        seg, glob = flat[both].astype(np.int64), registered[both].astype(np.int64)
        pairs, counts = np.unique(seg << 32 | glob, return_counts=True)
        seg_of, glob_of = pairs >> 32, pairs & 0xFFFFFFFF
        seg_sizes = np.bincount(flat)
        glob_ids, glob_sizes = np.unique(registered[registered != 0], return_counts=True)
        glob_size = glob_sizes[np.searchsorted(glob_ids, glob_of)]
        ok = counts >= MIN_OVERLAP * np.minimum(seg_sizes[seg_of], glob_size)
        ok &= np.isin(seg_of, in_core)
        mapping: dict[int, int] = {}
        used: set[int] = set()
        for k in np.argsort(-counts[ok], kind="stable"):
            s, g = int(seg_of[ok][k]), int(glob_of[ok][k])
            if s not in mapping and g not in used:
                mapping[s] = g
                used.add(g)
        return mapping

    def _register(self, index: int, global_window: np.ndarray) -> None:
        tile = self.tiles[index]
        win = _window(tile)
        for j in self._later[index]:
            other = self.tiles[j]
            shared = _intersect(win, _window(other))
            core_part = _intersect(win, _core(other))
            if shared is None or core_part is None:
                continue
            # Nuclei of this tile that reach into the other tile's core.
            cy0, cx0, cy1, cx1 = _relative(core_part, win)
            reaching = np.unique(global_window[cy0:cy1, cx0:cx1])
            reaching = reaching[reaching != 0]
            if reaching.size == 0:
                continue
            sy0, sx0, sy1, sx1 = _relative(shared, win)
            part = global_window[sy0:sy1, sx0:sx1]
            keep = np.isin(part, reaching)
            ys, xs = np.nonzero(keep)
            owin = _window(other)
            oy, ox = ys + shared[0] - owin[0], xs + shared[1] - owin[1]
            flat_index = oy.astype(np.int64) * (owin[3] - owin[1]) + ox
            self._pending.setdefault(j, []).append(_Registration(flat_index, part[keep]))

    @property
    def pending_pixels(self) -> int:
        """Registered pixels held for tiles not yet processed (memory check)."""
        return sum(r.flat_index.size for regs in self._pending.values() for r in regs)
