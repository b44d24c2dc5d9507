"""Patches as strided views over a resampled window: every patch position at once, padded
only where the patches reach past the slide border.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pipelines.patches.resample import ResampleGrid


def tile_halo_px(grid: ResampleGrid, patch_px: int) -> int:
    """Source pixels of context a tile needs so every patch of its core is complete."""
    return grid.align(math.ceil((patch_px // 2 + 2) * grid.scale) + 2)


def patch_view(
    resampled: np.ndarray,
    origin_y: int,
    origin_x: int,
    centre_y: np.ndarray,
    centre_x: np.ndarray,
    patch_px: int,
    dst_height_px: int,
    dst_width_px: int,
    pad_mode: str = "reflect",
    pad_value: int = 255,
) -> tuple[np.ndarray, int, int]:
    """A read-only (y, x, P, P, 3) view of every patch position over a resampled window.

    `resampled` covers patch-grid rows/columns from (origin_y, origin_x); where the patches of
    `centre_y`/`centre_x` reach outside it (only at the slide border) it is padded first.
    Returns the view and the patch-grid coordinates of its [0, 0] patch's top-left pixel, so
    patch c is `view[centre_y[c] - half - y0, centre_x[c] - half - x0]`.
    """
    half = patch_px // 2
    h, w, _ = resampled.shape
    need_y0, need_y1 = int(centre_y.min()) - half, int(centre_y.max()) + half + 1
    need_x0, need_x1 = int(centre_x.min()) - half, int(centre_x.max()) + half + 1
    pad = (
        (max(0, origin_y - need_y0), max(0, need_y1 - origin_y - h)),
        (max(0, origin_x - need_x0), max(0, need_x1 - origin_x - w)),
        (0, 0),
    )
    if any(pad[0]) or any(pad[1]):
        if (origin_y - pad[0][0] < -half or origin_x - pad[1][0] < -half
                or origin_y + h + pad[0][1] > dst_height_px + half
                or origin_x + w + pad[1][1] > dst_width_px + half):
            raise AssertionError("A patch needs pixels beyond the slide border plus half a patch.")
        if pad_mode == "constant":
            resampled = np.pad(resampled, pad, mode="constant", constant_values=pad_value)
        else:
            resampled = np.pad(resampled, pad, mode="reflect")
        origin_y -= pad[0][0]
        origin_x -= pad[1][0]
    return _positions_view(resampled, patch_px), origin_y + half, origin_x + half


def _positions_view(image: np.ndarray, patch_px: int) -> np.ndarray:
    """Read-only (y, x, P, P, 3) view: [y, x] is the patch whose top-left pixel is (y, x)."""
    sy, sx, sc = image.strides
    return as_strided(
        image,
        shape=(image.shape[0] - patch_px + 1, image.shape[1] - patch_px + 1, patch_px, patch_px, 3),
        strides=(sy, sx, sy, sx, sc),
        writeable=False,
    )


def cut_patches(
    resampled: np.ndarray,
    origin_y: int,
    origin_x: int,
    centre_y: np.ndarray,
    centre_x: np.ndarray,
    patch_px: int,
    dst_height_px: int,
    dst_width_px: int,
    pad_mode: str = "reflect",
    pad_value: int = 255,
) -> np.ndarray:
    """(k, patch_px, patch_px, 3) patches centred on patch-grid pixels, in one fancy index."""
    view, y0, x0 = patch_view(
        resampled, origin_y, origin_x, centre_y, centre_x, patch_px,
        dst_height_px, dst_width_px, pad_mode, pad_value,
    )
    return view[np.asarray(centre_y) - y0, np.asarray(centre_x) - x0]
