"""Classical nucleus segmentation: smoothing, threshold, distance transform, seeded watershed.

No weights, no GPU: the demo default. Every length is given in µm and converted with the
slide's pixel size, so the same parameters work at 0.32 µm/px (MxIF) and 0.39 µm/px (MIBI).
The threshold is Otsu's on the smoothed nuclear stain; `calibrate` fixes it once per slide from
a sample of the whole slide, so every tile of a slide is cut at the same level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from pipelines.errors import ConfigurationError


@dataclass(frozen=True)
class WatershedParams:
    """Lengths in µm, areas in µm².

    smooth_sigma_um: Gaussian smoothing of the nuclear stain before thresholding.
    threshold: absolute cut-off on the smoothed stain; None = Otsu (per slide once calibrated).
    threshold_scale: multiplies the Otsu level (<1 keeps dimmer nuclei).
    min_snr: the cut-off is at least background + min_snr x noise (robust, from the sample),
        so a slide of pure background gives no nuclei rather than segmented noise.
    local_block_um: if set, a pixel must also exceed the Gaussian-weighted local mean over
        this scale (helps when the background varies across the slide).
    seed_radius_um: nuclei whose centres are closer than about this are merged.
    min_area_um2 / max_diameter_um: smallest nucleus kept / largest expected (sets the halo).
    """

    smooth_sigma_um: float = 0.15
    threshold: float | None = None
    threshold_scale: float = 0.9
    min_snr: float = 3.0
    local_block_um: float | None = None
    seed_radius_um: float = 2.5
    min_area_um2: float = 6.0
    max_diameter_um: float = 20.0

    def __post_init__(self) -> None:
        if self.smooth_sigma_um < 0 or self.seed_radius_um <= 0 or self.max_diameter_um <= 0:
            raise ConfigurationError(
                "Watershed lengths must be positive (smooth_sigma_um >= 0, seed_radius_um > 0, "
                f"max_diameter_um > 0), got {self}."
            )


def _px(length_um: float, mpp: float) -> float:
    if not mpp or mpp <= 0:
        raise ConfigurationError(f"Pixel size must be positive to scale µm lengths, got mpp={mpp}.")
    return length_um / mpp


def smooth_nuclear(nuclear: np.ndarray, mpp: float, params: WatershedParams) -> np.ndarray:
    """The nuclear stain smoothed at `smooth_sigma_um` (float32, same units as the input)."""
    image = np.asarray(nuclear, dtype=np.float32)
    sigma = _px(params.smooth_sigma_um, mpp)
    return ndi.gaussian_filter(image, sigma) if sigma > 0 else image


def slide_threshold(sample: np.ndarray, params: WatershedParams) -> float:
    """Otsu's level on a sample of smoothed nuclear-stain values, floored at background + noise.

    Returns +inf when the sample is flat (no contrast at all: nothing can be a nucleus).
    """
    values = np.asarray(sample, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return float("inf")
    if params.threshold is not None:
        return float(params.threshold)
    otsu = float(threshold_otsu(values)) * params.threshold_scale
    low, median = np.percentile(values, [15.87, 50.0])
    floor = median + params.min_snr * max(median - low, 0.0)
    return max(otsu, float(floor))


@dataclass(frozen=True)
class WatershedSegmenter:
    """The `watershed` backend (see pipelines/segment/base.py for the protocol)."""

    params: WatershedParams = WatershedParams()
    level: float | None = None  # fixed cut-off once calibrated on the slide
    name: str = "watershed"

    @property
    def halo_px(self) -> int:
        """Context for a tile at 0.32 µm/px; `halo_for` gives it at another pixel size."""
        return self.halo_for(0.32)

    def halo_for(self, mpp: float) -> int:
        return int(np.ceil(_px(self.params.max_diameter_um, mpp)))

    def calibrate(self, smoothed_sample: Iterable[np.ndarray], mpp: float) -> WatershedSegmenter:
        """A copy whose cut-off is fixed from smoothed nuclear-stain samples of the whole slide."""
        parts = [np.asarray(s, dtype=np.float32).ravel() for s in smoothed_sample]
        sample = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return replace(self, level=slide_threshold(sample, self.params))

    def smooth(self, nuclear: np.ndarray, mpp: float) -> np.ndarray:
        return smooth_nuclear(nuclear, mpp, self.params)

    def segment(self, nuclear: np.ndarray, membrane: np.ndarray | None, mpp: float) -> np.ndarray:
        """int32 nucleus labels of one window; the membrane stain is not used by this backend."""
        smoothed = self.smooth(nuclear, mpp)
        level = self.level if self.level is not None else slide_threshold(smoothed, self.params)
        return watershed_labels(smoothed, level, mpp, self.params)


def watershed_labels(
    smoothed: np.ndarray, level: float, mpp: float, params: WatershedParams
) -> np.ndarray:
    """Seeded watershed of the foreground (smoothed > level) on its distance transform."""
    out = np.zeros(smoothed.shape, dtype=np.int32)
    if not np.isfinite(level):
        return out
    foreground = smoothed > level
    if params.local_block_um:
        local = ndi.gaussian_filter(smoothed, _px(params.local_block_um, mpp) / 2.0)
        foreground &= smoothed > local
    if not foreground.any():
        return out
    foreground = ndi.binary_fill_holes(foreground)
    min_area_px = params.min_area_um2 / (mpp * mpp)
    distance = ndi.distance_transform_edt(foreground).astype(np.float32)
    # A little smoothing of the distance map removes ridge noise that would over-split nuclei.
    distance = ndi.gaussian_filter(distance, 1.0)
    radius = max(1, round(_px(params.seed_radius_um, mpp)))
    footprint = _disk(radius)
    peaks = (distance == ndi.maximum_filter(distance, footprint=footprint)) & foreground
    peaks &= distance >= 1.0
    markers, _ = ndi.label(peaks, structure=np.ones((3, 3), bool))
    labels = watershed(-distance, markers, mask=foreground).astype(np.int32)
    if labels.max() == 0:
        return out
    areas = np.bincount(labels.ravel())
    small = areas < min_area_px
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return labels


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx) <= radius * radius
