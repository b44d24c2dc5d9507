"""A tiny he-learned setting and the small synthetic pairs it trains on, shared by the tests of
the he-learned backend: seconds on a CPU, enough for the network to find nuclei."""

from __future__ import annotations

from pipelines.segment.he_learned import HePair, HeTrainParams
from pipelines.segment.he_pairs import synthetic_he_pairs
from pipelines.segment.he_unet import UNetShape
from pipelines.synthetic.cohort import CohortParams


def tiny_params(steps: int) -> HeTrainParams:
    """A 4-channel, 2-level U-Net on 32 px crops, batches of 4, on one CPU thread."""
    return HeTrainParams(steps=steps, batch_size=4, crop_px=32, unet=UNetShape(4, 2, 2),
                         learning_rate=1e-2, log_every=10, cpu_threads=1)


def tiny_pairs() -> list[HePair]:
    """Two 160 px synthetic slides: virtual H&E with their MxIF nucleus masks."""
    return list(synthetic_he_pairs(CohortParams(n_patients=2, n_slides=2, slide_px=160, seed=5)))
