"""Hematoxylin and eosin amounts of RGB H&E pixels, by colour deconvolution.

skimage's `rgb2hed` (Ruifrok and Johnston's stain vectors) turns RGB into optical densities
along the hematoxylin, eosin and DAB directions. Values are in rgb2hed's units (natural-log
optical density divided by ln(1e-6), about 1/13.8 of the optical density): glass and pure
eosin are about 0, nuclei about 0.02-0.15. `HEStainSlide` shows an H&E store to the feature
pass (pipelines/quantify/) as a two-stain slide, so each nucleus gets mean_hematoxylin and
mean_eosin besides its shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from skimage.color import rgb2hed

from storage.slide_store import SlideInfo

HE_STAINS: tuple[str, ...] = ("Hematoxylin", "Eosin")


def stain_densities(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 2) float32: hematoxylin and eosin of an (h, w, 3) uint8 window (rgb2hed units)."""
    hed = rgb2hed(np.asarray(rgb))
    return np.clip(hed[..., :2], 0.0, None).astype(np.float32)


def hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """(h, w) float32 hematoxylin of an (h, w, 3) uint8 window (rgb2hed units, >= 0)."""
    return stain_densities(rgb)[..., 0]


class RGBSlide(Protocol):
    """An RGB slide on its own grid (storage's VirtualHEReader fits, level 0 by default)."""

    slide_id: str
    mpp: float
    height_px: int
    width_px: int

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray: ...


class HEStainSlide:
    """An RGB slide read as (stain, y, x) float32 hematoxylin and eosin, the SlideLike reader
    interface of segmentation and quantification."""

    def __init__(self, rgb: RGBSlide) -> None:
        self.rgb = rgb
        self.info = SlideInfo(slide_id=rgb.slide_id, stains=HE_STAINS, mpp=float(rgb.mpp),
                              height_px=int(rgb.height_px), width_px=int(rgb.width_px),
                              dtype="float32")

    def read(self, y0: int = 0, x0: int = 0, y1: int | None = None, x1: int | None = None,
             stains: Sequence[str] | None = None) -> np.ndarray:
        y1 = self.info.height_px if y1 is None else y1
        x1 = self.info.width_px if x1 is None else x1
        planes = np.moveaxis(stain_densities(self.rgb.read(y0, x0, y1, x1)), -1, 0)
        if stains is None:
            return planes
        return planes[[HE_STAINS.index(s) for s in stains]]
