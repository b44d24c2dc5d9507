"""One resampled tile window, padded past the slide border, in buffers reused per tile."""

from __future__ import annotations

import numpy as np

from pipelines.patches.params import PatchParams
from pipelines.patches.plan import PatchPlan
from pipelines.patches.resample import resample_rgb


def _kept(buffer: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """`buffer` if it has `shape`, else a new uint8 array (fresh pages cost more than a copy)."""
    if buffer is None or buffer.shape != shape:
        return np.empty(shape, np.uint8)
    return buffer


class _TileCanvas:
    """One resampled tile window, padded past the slide border, in buffers reused per tile.

    Interior tiles are resampled straight into a reused buffer; a tile at the slide border is
    resampled into the middle of a larger buffer whose margins (half a patch wide, only on the
    sides where the window meets the border) are then filled by reflection or a constant, so
    every patch of a tile is one slice of the canvas and edge patches need no work of their own.
    """

    def __init__(self, plan: PatchPlan, params: PatchParams) -> None:
        self.plan, self.params = plan, params
        self.half = params.patch_px // 2
        self._buffers: dict[tuple[int, int], np.ndarray] = {}
        self._source: np.ndarray | None = None

    def _buffer(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._buffers:
            if len(self._buffers) > 8:  # a slide has at most 4 tile shapes per padding
                self._buffers.clear()
            self._buffers[h, w] = np.empty((h, w, 3), np.uint8)
        return self._buffers[h, w]

    def render(self, window: np.ndarray, ry0: int, rx0: int) -> tuple[np.ndarray, int, int]:
        """The canvas of a source window at (ry0, rx0) and the patch-grid pixel of its [0, 0]."""
        plan, grid, half = self.plan, self.plan.grid, self.half
        if not window.flags.c_contiguous:  # a view into a larger image: copy to a kept buffer
            self._source = _kept(self._source, window.shape)
            self._source[...] = window
            window = self._source
        h, w = grid.dst_size(window.shape[0]), grid.dst_size(window.shape[1])
        oy, ox = ry0 * grid.q // grid.p, rx0 * grid.q // grid.p
        top, left = half if oy == 0 else 0, half if ox == 0 else 0
        bottom = half if oy + h == plan.dst_height_px else 0
        right = half if ox + w == plan.dst_width_px else 0
        if not (top or left or bottom or right):
            return resample_rgb(window, grid, self._buffer(h, w)), oy, ox
        canvas = self._buffer(top + h + bottom, left + w + right)
        if grid.p == grid.q:
            canvas[top : top + h, left : left + w] = window
        else:
            inner = self._buffer(h, w)
            canvas[top : top + h, left : left + w] = resample_rgb(window, grid, inner)
        if self.params.pad_mode == "constant" or min(h, w) <= half:
            if self.params.pad_mode == "constant":
                padded = np.pad(canvas[top : top + h, left : left + w],
                                ((top, bottom), (left, right), (0, 0)),
                                mode="constant", constant_values=self.params.pad_value)
            else:  # a slide narrower than half a patch: reflect more than once
                padded = np.pad(canvas[top : top + h, left : left + w],
                                ((top, bottom), (left, right), (0, 0)), mode="reflect")
            canvas[...] = padded
        else:  # reflect about the border pixel, columns first, then whole rows (corners too)
            rows = slice(top, top + h)
            if left:
                canvas[rows, :left] = canvas[rows, left + 1 : 2 * left + 1][:, ::-1]
            if right:
                e = left + w
                canvas[rows, e:] = canvas[rows, e - right - 1 : e - 1][:, ::-1]
            if top:
                canvas[:top] = canvas[top + 1 : 2 * top + 1][::-1]
            if bottom:
                e = top + h
                canvas[e:] = canvas[e - bottom - 1 : e - 1][::-1]
        return canvas, oy - top, ox - left
