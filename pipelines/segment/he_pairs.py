"""Training pairs for he-learned made in memory, the way the chain makes them on disk.

For each simulated slide: the Beer-Lambert virtual H&E (as the `virtual_he` asset renders it,
calibrated on the slide's own pixels) and the nucleus mask the `watershed` backend segments on
the nuclear stain (as `nucleus_mask` does), both on the slide's grid. Benchmarks and tests
train on these without a data root; the `he_nucleus_model` asset reads the same pairs from the
stores instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipelines.segment import SegmentParams, segment_slide
from pipelines.segment.base import ArraySlide
from pipelines.segment.he_learned import ArrayWindows, HePair
from pipelines.segment.watershed import WatershedSegmenter
from pipelines.synthetic.cohort import CohortParams, plan_cohort, simulate_slide
from pipelines.vhe.beer_lambert import BeerLambertBackend

SAMPLE_STEP = 7  # every 7th pixel calibrates the renderer


def virtual_he(image: np.ndarray, stains: tuple[str, ...], mpp: float, slide_id: str
               ) -> np.ndarray:
    """(h, w, 3) uint8 Beer-Lambert virtual H&E of a (stain, h, w) slide held in memory."""
    backend = BeerLambertBackend().for_stains(stains, source=f"Slide {slide_id!r}")
    index = [stains.index(s) for s in backend.stains]
    window = image[index]
    sample = window.reshape(len(index), -1)[:, ::SAMPLE_STEP].astype(np.float32)
    return backend.calibrate(sample, slide_id).render(window, backend.stains, mpp)


def synthetic_he_pairs(params: CohortParams, max_slides: int | None = None) -> Iterator[HePair]:
    """Virtual H&E and watershed nucleus masks of the first `max_slides` simulated slides."""
    for spec in plan_cohort(params)[:max_slides]:
        slide = simulate_slide(spec, params)
        rgb = virtual_he(slide.image, slide.stains, slide.mpp, slide.slide_id)
        array = ArraySlide(slide.image, slide.stains, slide.mpp, slide.slide_id)
        labels = np.zeros(slide.labels.shape, dtype=np.int32)
        for tile, block in segment_slide(array, WatershedSegmenter(),
                                         SegmentParams(membrane_stain=None)):
            labels[tile.y0:tile.y1, tile.x0:tile.x1] = block
        h, w = labels.shape
        yield HePair(slide.slide_id, ArrayWindows(rgb), ArrayWindows(labels), slide.mpp, h, w)
