"""Stain harmonisation: make a real H&E slide's colours match the virtual H&E the classifier
was trained on, before its patches are classified.

Both methods are a fixed per-pixel map fitted once per slide, so every tile of a slide is
changed alike and tiling cannot show. They are fitted on nucleus-centred pixels of both sides
(the real slide's patches around its detected nuclei, the training patches of the virtual
H&E), so both samples hold the same mix of nuclei and surrounding tissue.

- `reinhard` (Reinhard et al. 2001, in CIELAB): each LAB channel of the real slide is shifted
  and scaled to the mean and standard deviation of the virtual H&E's tissue pixels.
- `macenko` (Macenko et al. 2009): the slide's hematoxylin and eosin optical-density vectors
  and their 99th-percentile amounts are estimated; each pixel's stain amounts are rescaled and
  re-rendered with the virtual H&E's vectors and amounts.
- `none`: the slide as scanned.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from skimage.color import lab2rgb, rgb2lab

from pipelines.errors import ConfigurationError

HarmoniseMethod = Literal["none", "reinhard", "macenko"]
METHODS: tuple[str, ...] = ("none", "reinhard", "macenko")
# Tissue: mean optical density over the three channels above this (natural log units): glass
# is about 0.04, pale pink stroma about 0.25. (Macenko's own rule, every channel above 0.15,
# drops pale eosin-only pixels, whose red density is near 0.1, and so misses the eosin vector.)
TISSUE_OD = 0.15
MIN_TISSUE_PIXELS = 500
_IO = 255.0


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """-ln((I + 1) / 256) of uint8 RGB, float32, same shape."""
    return -np.log((np.asarray(rgb, np.float32) + 1.0) / (_IO + 1.0))


def tissue_pixels(pixels: np.ndarray) -> np.ndarray:
    """(n, 3) uint8 pixels that absorb light (not glass)."""
    flat = np.asarray(pixels, np.uint8).reshape(-1, 3)
    return flat[optical_density(flat).mean(axis=1) > TISSUE_OD]


@dataclass(frozen=True)
class LabStatistics:
    """Mean and standard deviation of the L, a, b channels of tissue pixels."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def lab_statistics(pixels: np.ndarray) -> LabStatistics:
    lab = rgb2lab(_tissue(pixels)[None]).reshape(-1, 3)
    return LabStatistics(tuple(float(v) for v in lab.mean(axis=0)),
                         tuple(float(max(v, 1e-3)) for v in lab.std(axis=0)))


def reinhard(rgb: np.ndarray, source: LabStatistics, target: LabStatistics) -> np.ndarray:
    """`rgb` (h, w, 3) uint8 with its LAB statistics moved from `source` to `target`."""
    lab = rgb2lab(np.asarray(rgb))
    lab = (lab - source.mean) / source.std * target.std + target.mean
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    with warnings.catch_warnings():  # colours outside sRGB are clipped, as intended
        warnings.simplefilter("ignore", UserWarning)
        out = lab2rgb(lab)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class StainVectors:
    """Macenko's estimate: unit optical-density vectors of hematoxylin and eosin (rows, RGB)
    and the 99th percentile of each stain's amount."""

    vectors: tuple[tuple[float, float, float], tuple[float, float, float]]
    max_amount: tuple[float, float]


def stain_vectors(pixels: np.ndarray, alpha_percent: float = 1.0) -> StainVectors:
    """Macenko's hematoxylin and eosin vectors and amounts from tissue pixels."""
    od = optical_density(_tissue(pixels)).astype(np.float64)
    _, eigenvectors = np.linalg.eigh(np.cov(od.T))
    plane = eigenvectors[:, 1:3]  # the two largest
    plane = plane * np.sign(plane.sum(axis=0))  # point into positive optical density
    projected = od @ plane
    angle = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angle, [alpha_percent, 100 - alpha_percent])
    v_low = plane @ np.array([np.cos(low), np.sin(low)])
    v_high = plane @ np.array([np.cos(high), np.sin(high)])
    # hematoxylin absorbs red most relative to eosin: the vector with the larger red share
    h, e = (v_low, v_high) if v_low[0] > v_high[0] else (v_high, v_low)
    matrix = np.stack([h / np.linalg.norm(h), e / np.linalg.norm(e)])
    amounts = np.linalg.lstsq(matrix.T, od.T, rcond=None)[0]
    top = np.percentile(amounts, 99, axis=1)
    return StainVectors((tuple(map(float, matrix[0])), tuple(map(float, matrix[1]))),
                        (float(max(top[0], 1e-6)), float(max(top[1], 1e-6))))


def macenko(rgb: np.ndarray, source: StainVectors, target: StainVectors) -> np.ndarray:
    """`rgb` (h, w, 3) uint8 re-rendered with `target`'s stain vectors and amounts."""
    shape = np.asarray(rgb).shape
    od = optical_density(rgb).reshape(-1, 3).astype(np.float64)
    src = np.array(source.vectors)
    amounts = np.linalg.lstsq(src.T, od.T, rcond=None)[0]
    amounts *= (np.array(target.max_amount) / np.array(source.max_amount))[:, None]
    out = (_IO + 1.0) * np.exp(-(np.array(target.vectors).T @ amounts)) - 1.0
    return np.clip(np.rint(out.T), 0, 255).astype(np.uint8).reshape(shape)


@dataclass(frozen=True)
class Harmoniser:
    """A fitted harmonisation: call it on an (h, w, 3) uint8 window."""

    method: str
    source: LabStatistics | StainVectors
    target: LabStatistics | StainVectors

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.method == "reinhard":
            return reinhard(rgb, self.source, self.target)  # type: ignore[arg-type]
        return macenko(rgb, self.source, self.target)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        return {"method": self.method, "source": self.source.__dict__,
                "target": self.target.__dict__}


def fit_harmoniser(method: str, source_pixels: np.ndarray,
                   target_pixels: np.ndarray) -> Harmoniser | None:
    """The harmonisation from the real slide's pixels to the virtual H&E's (None: `none`)."""
    if method not in METHODS:
        raise ConfigurationError(f"harmonise must be one of {list(METHODS)}, not {method!r}.")
    if method == "none":
        return None
    fit = lab_statistics if method == "reinhard" else stain_vectors
    return Harmoniser(method, fit(source_pixels), fit(target_pixels))


def _tissue(pixels: np.ndarray) -> np.ndarray:
    tissue = tissue_pixels(pixels)
    if len(tissue) < MIN_TISSUE_PIXELS:
        raise ConfigurationError(
            f"Only {len(tissue)} tissue pixels to fit stain harmonisation on (at least "
            f"{MIN_TISSUE_PIXELS} needed); set harmonise: none for this slide."
        )
    return tissue
