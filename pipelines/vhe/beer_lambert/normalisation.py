"""Per-slide, per-stain intensity levels (glass, stain-negative background, strongly positive)
fitted on a pixel sample by robust percentiles, exact from a histogram for integer slides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.errors import SlideInputError
from pipelines.vhe.beer_lambert.params import BeerLambertParams


@dataclass(frozen=True)
class StainLevels:
    """Per-slide, per-stain intensity levels fitted on a pixel sample.

    `glass`: the dark level outside tissue; `background`: the level of stain-negative tissue
    (autofluorescence); `high`: the level of a strongly positive pixel. A stain's signal is
    n = clip((x - background) / (high - background), 0, 1) and its tissue evidence
    a = (x - glass) / (background - glass). (The CycleGAN's `StainNormalisation`,
    pipelines/vhe/cyclegan/data.py, is another mapping: a low..high range onto [-1, 1].)
    """

    glass: np.ndarray
    background: np.ndarray
    high: np.ndarray

    def to_dict(self, stains: Sequence[str]) -> dict[str, list[float]]:
        return {
            s: [float(g), float(b), float(h)]
            for s, g, b, h in zip(stains, self.glass, self.background, self.high, strict=True)
        }


def _value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct values as float32, their counts) when `values` are integers of a modest range
    (as uint8/uint16 slides give), else None."""
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)) or high - low > 1 << 20:
        return None
    shifted = values - np.float32(low)
    as_int = shifted.astype(np.int64)
    if not np.array_equal(as_int, shifted):
        return None
    count = np.bincount(as_int)
    present = np.flatnonzero(count)
    return (present + low).astype(np.float32), count[present]


def _ranked_percentiles(
    sorted_values: np.ndarray, cumulative: np.ndarray, qs: Sequence[float]
) -> np.ndarray:
    """np.percentile's default (linear) percentiles of the multiset where sorted_values[k]
    occurs until rank cumulative[k] - 1."""
    n = int(cumulative[-1])
    out = np.empty(len(qs), np.float64)
    for j, q in enumerate(qs):
        rank = (n - 1) * float(q) / 100.0
        lo = int(np.floor(rank))
        hi = min(lo + 1, n - 1)
        a, b = np.searchsorted(cumulative, [lo, hi], side="right")
        va, vb = float(sorted_values[a]), float(sorted_values[b])
        out[j] = va + (vb - va) * (rank - lo)
    return out


def fit_normalisation(
    sample: np.ndarray, params: BeerLambertParams, stains: Sequence[str], slide_id: str = "slide"
) -> StainLevels:
    """Robust per-stain levels from a (stain, n) pixel sample of one slide.

    Percentiles make the rendering independent of the slide's intensity scale: multiplying a
    slide by a constant multiplies every level by it and leaves the colours unchanged. `high`
    is at least `min_contrast_sigma` robust noise sigmas above the background, so a stain with
    few positive pixels does not stretch its noise to full colour.
    """
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim != 2 or sample.shape[0] != len(stains) or sample.shape[1] == 0:
        raise SlideInputError(
            f"Slide {slide_id!r}: the calibration sample must be (stain, n) with {len(stains)} "
            f"stains and n > 0, got {sample.shape}."
        )
    levels = np.empty((3, len(stains)), np.float64)
    mad = np.empty(len(stains), np.float64)
    qs = [params.glass_percentile, params.background_percentile, params.high_percentile]
    for i, values in enumerate(sample):  # one stain at a time keeps the copies small
        counted = _value_counts(values)
        if counted is None:
            levels[:, i] = np.percentile(values, qs)
            mad[i] = np.median(np.abs(values - np.float32(levels[1, i]))) * 1.4826
        else:  # integer intensities (every slide format here): exact, from a histogram
            value, count = counted
            levels[:, i] = _ranked_percentiles(value, np.cumsum(count), qs)
            distance = np.abs(value - np.float32(levels[1, i]))
            order = np.argsort(distance, kind="stable")
            mad[i] = _ranked_percentiles(distance[order], np.cumsum(count[order]), [50.0])[0]
            mad[i] *= 1.4826
    glass, background, high = levels
    high = np.maximum(high, background + params.min_contrast_sigma * mad)
    nuclear = list(stains).index(params.nuclear_stain)
    if high[nuclear] <= background[nuclear]:
        raise SlideInputError(
            f"Slide {slide_id!r}: stain {params.nuclear_stain!r} is constant, so no nucleus "
            "can be rendered; check the slide's stain order and pixel data."
        )
    high = np.where(high > background, high, background + 1.0)
    return StainLevels(
        glass=glass.astype(np.float32),
        background=background.astype(np.float32),
        high=high.astype(np.float32),
    )
