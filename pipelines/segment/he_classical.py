"""The `he-classical` H&E backend: colour deconvolution, a threshold and a distance watershed.

No weights. Hematoxylin by skimage's `rgb2hed`, smoothed at `smooth_sigma_um`; foreground
where it exceeds the slide's Otsu level times `threshold_scale` (never below `min_level`, so
glass and eosin-only tissue give no nuclei), holes filled (vesicular nuclei have pale
centres), small specks dropped; nuclei are split by a watershed of the smoothed distance map
from its h-maxima (`seed_depth_um`: a saddle shallower than this does not split), which cuts
touching round nuclei without shattering elongated ones. Every length is in µm, so 20x and 40x
slides get the same physical settings.

The defaults were chosen on three annotated tiles of ../shared/data/real_he_nuclei (image03,
image06, image10) and measured on the other twelve (tests/benchmarks/test_bench_he_segment.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from pipelines.errors import ConfigurationError
from pipelines.he_stains import hematoxylin

# The three annotated tiles the defaults were chosen on; every other tile measures them.
TUNING_TILES: tuple[str, ...] = ("image03", "image06", "image10")


@dataclass(frozen=True)
class HEClassicalParams:
    """Lengths in µm, areas in µm², levels in rgb2hed hematoxylin units.

    smooth_sigma_um: Gaussian smoothing of the hematoxylin channel.
    threshold_scale: multiplies the slide's Otsu level (< 1 keeps paler nuclei).
    min_level: the cut-off is never below this (glass and eosin-only tissue are below it).
    distance_sigma_um: smoothing of the distance map before seeds are found.
    seed_depth_um: h of the h-maxima seeds: a saddle this deep (µm) separates two nuclei.
    min_area_um2 / max_diameter_um: smallest nucleus kept / largest expected (sets the halo).
    """

    smooth_sigma_um: float = 0.6
    threshold_scale: float = 0.8
    min_level: float = 0.01
    distance_sigma_um: float = 0.5
    seed_depth_um: float = 0.5
    min_area_um2: float = 8.0
    max_diameter_um: float = 20.0

    def __post_init__(self) -> None:
        if (self.smooth_sigma_um < 0 or self.distance_sigma_um < 0 or self.seed_depth_um <= 0
                or self.threshold_scale <= 0 or self.max_diameter_um <= 0
                or self.min_area_um2 < 0 or self.min_level < 0):
            raise ConfigurationError(f"he-classical parameters out of range: {self}.")


def _px(length_um: float, mpp: float) -> float:
    if not mpp or mpp <= 0:
        raise ConfigurationError(f"Pixel size must be positive to scale µm lengths, got {mpp}.")
    return length_um / mpp


def smoothed_hematoxylin(rgb: np.ndarray, mpp: float, params: HEClassicalParams) -> np.ndarray:
    """Hematoxylin of an RGB window smoothed at `smooth_sigma_um` (float32)."""
    h = hematoxylin(rgb)
    sigma = _px(params.smooth_sigma_um, mpp)
    return ndi.gaussian_filter(h, sigma) if sigma > 0 else h


def slide_level(sample: np.ndarray, params: HEClassicalParams) -> float:
    """The foreground cut-off from smoothed hematoxylin values: scaled Otsu, floored at
    `min_level`; +inf for a flat sample (nothing to find)."""
    values = np.asarray(sample, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return float("inf")
    return max(float(threshold_otsu(values)) * params.threshold_scale, params.min_level)


def he_labels(smoothed: np.ndarray, level: float, mpp: float,
              params: HEClassicalParams) -> np.ndarray:
    """int32 nucleus labels: foreground above `level`, split by an h-maxima distance watershed."""
    out = np.zeros(smoothed.shape, np.int32)
    if not np.isfinite(level):
        return out
    foreground = ndi.binary_fill_holes(smoothed > level)
    min_area_px = params.min_area_um2 / (mpp * mpp)
    foreground &= ~_small(foreground, min_area_px)
    if not foreground.any():
        return out
    distance = ndi.distance_transform_edt(foreground) * mpp  # µm
    sigma = _px(params.distance_sigma_um, mpp)
    if sigma > 0:
        distance = ndi.gaussian_filter(distance, sigma)
    seeds = h_maxima(distance, params.seed_depth_um).astype(bool) & foreground
    markers, _ = ndi.label(seeds, structure=np.ones((3, 3), bool))
    labels = watershed(-distance, markers, mask=foreground).astype(np.int32)
    areas = np.bincount(labels.ravel())
    small = areas < min_area_px
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return labels


def _small(mask: np.ndarray, min_area_px: float) -> np.ndarray:
    components, _ = ndi.label(mask)
    areas = np.bincount(components.ravel())
    small = areas < min_area_px
    small[0] = False
    return small[components]


@dataclass(frozen=True)
class HEClassicalSegmenter:
    """The `he-classical` backend (protocol: pipelines/segment/he.py)."""

    params: HEClassicalParams = HEClassicalParams()
    level: float | None = None  # fixed once calibrated on the slide
    name: str = "he-classical"

    def halo_for(self, mpp: float) -> int:
        return int(np.ceil(_px(self.params.max_diameter_um, mpp)))

    def sample(self, rgb: np.ndarray, mpp: float) -> np.ndarray:
        return smoothed_hematoxylin(rgb, mpp, self.params)

    def calibrate(self, samples: Iterable[np.ndarray], mpp: float) -> HEClassicalSegmenter:
        parts = [np.asarray(s, np.float32).ravel() for s in samples]
        sample = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return replace(self, level=slide_level(sample, self.params))

    def calibration(self) -> dict[str, float]:
        return {} if self.level is None else {"hematoxylin_level": float(self.level)}

    def segment_rgb(self, rgb: np.ndarray, mpp: float) -> np.ndarray:
        smoothed = smoothed_hematoxylin(rgb, mpp, self.params)
        level = self.level if self.level is not None else slide_level(smoothed, self.params)
        return he_labels(smoothed, level, mpp, self.params)


def build(settings: Mapping[str, Any]) -> HEClassicalSegmenter:
    """The registry's factory: settings are HEClassicalParams fields (µm, µm²)."""
    known = {f.name for f in fields(HEClassicalParams)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigurationError(
            f"he-classical has no setting(s) {unknown}; it takes {sorted(known)}.")
    return HEClassicalSegmenter(HEClassicalParams(**settings))
