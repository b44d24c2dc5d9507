"""A small picture of a segmentation: nucleus outlines over the nuclear stain."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

OUTLINE_RGB = (255, 214, 0)


def outline_overlay(nuclear: np.ndarray, labels: np.ndarray, max_px: int = 512) -> np.ndarray:
    """(h, w, 3) uint8: the nuclear stain in grey (0.5-99.5 percentile stretch) with each
    nucleus's outline in yellow, downsampled by an integer step to at most `max_px` a side."""
    nuclear = np.asarray(nuclear, dtype=np.float32)
    low, high = np.percentile(nuclear, [0.5, 99.5]) if nuclear.size else (0.0, 1.0)
    grey = np.clip((nuclear - low) / max(float(high - low), 1e-6), 0, 1)
    rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    rgb[find_boundaries(labels, mode="inner")] = OUTLINE_RGB
    step = max(1, int(np.ceil(max(labels.shape) / max_px)))
    return np.ascontiguousarray(rgb[::step, ::step])


def rgb_outline_overlay(rgb: np.ndarray, labels: np.ndarray, max_px: int = 512) -> np.ndarray:
    """(h, w, 3) uint8: an RGB image (H&E) with each nucleus's outline in yellow, downsampled
    by an integer step to at most `max_px` a side."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    out[find_boundaries(labels, mode="inner")] = OUTLINE_RGB
    step = max(1, int(np.ceil(max(labels.shape) / max_px)))
    return np.ascontiguousarray(out[::step, ::step])
