"""Resampling to the patch grid: a rational step `p/q` between the slide's pixels and the
patch grid's (`ResampleGrid`), and one RGB window resampled bilinearly onto it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pipelines.errors import ConfigurationError


@dataclass(frozen=True)
class ResampleGrid:
    """The patch grid of a slide: `p` source pixels span exactly `q` destination pixels."""

    src_mpp: float
    p: int
    q: int

    @classmethod
    def between(cls, src_mpp: float, dst_mpp: float, max_period: int = 64) -> ResampleGrid:
        if not (src_mpp > 0 and dst_mpp > 0):
            raise ConfigurationError(f"Pixel sizes must be > 0, got {src_mpp}, {dst_mpp} µm/px.")
        step = Fraction(dst_mpp / src_mpp).limit_denominator(max_period)
        return cls(src_mpp=float(src_mpp), p=step.numerator, q=step.denominator)

    @property
    def scale(self) -> float:
        """Source pixels per destination pixel."""
        return self.p / self.q

    @property
    def dst_mpp(self) -> float:
        """The destination pixel size actually used (the requested one up to 1/max_period)."""
        return self.src_mpp * self.p / self.q

    def dst_size(self, src_px: int) -> int:
        return (src_px * self.q) // self.p

    def align(self, src_px: int) -> int:
        """`src_px` rounded up to a whole number of periods."""
        return -(-src_px // self.p) * self.p

    def to_dst(self, src_coord: np.ndarray) -> np.ndarray:
        """Nearest destination pixel of continuous source pixel coordinates."""
        return np.floor((np.asarray(src_coord, np.float64) + 0.5) * self.q / self.p).astype(
            np.int64
        )

    def to_src(self, dst_index: np.ndarray) -> np.ndarray:
        """Source coordinate of destination pixel centres."""
        return (np.asarray(dst_index, np.float64) + 0.5) * self.p / self.q - 0.5


def resample_rgb(
    window: np.ndarray, grid: ResampleGrid, out: np.ndarray | None = None
) -> np.ndarray:
    """Resample an (h, w, 3) uint8 window that starts on a period boundary to the grid.

    Returns (dst_size(h), dst_size(w), 3) uint8; output pixel k has its centre at window
    coordinate (k + 0.5) * p / q - 0.5. Bilinear, antialiased when shrinking (PIL-style
    triangle filter), uint8 arithmetic. `out`, if given, is a C-contiguous array of that shape
    the result is written into (and returned), so a tile loop reuses one buffer.
    """
    if grid.p == grid.q:
        return np.asarray(window)
    h, w, _ = window.shape
    dst_h, dst_w = grid.dst_size(h), grid.dst_size(w)
    if out is None:
        out = np.empty((dst_h, dst_w, 3), np.uint8)
    elif out.shape != (dst_h, dst_w, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous uint8 of shape {(dst_h, dst_w, 3)}.")
    import torch  # here, so the modules that only need the patch geometry load without it

    # Interleaved (y, x, 3) in and out: as NCHW tensors both are channels_last, the layout the
    # uint8 kernel works in, so neither side needs a transposing copy.
    src = torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1)[None]
    dst = torch.from_numpy(out).permute(2, 0, 1)[None]
    # Full periods give the exact step from the sizes; the slide's last tiles pass the step.
    scale = None if h % grid.p == 0 and w % grid.p == 0 else grid.q / grid.p
    if grid.p > grid.q:
        torch.ops.aten._upsample_bilinear2d_aa.out(
            src, [dst_h, dst_w], False, scale, scale, out=dst
        )
    else:
        torch.ops.aten.upsample_bilinear2d.out(src, [dst_h, dst_w], False, scale, scale, out=dst)
    return out
