"""A synthetic H&E field with a known answer: eosin-stained tissue with hematoxylin nuclei.

Nuclei are non-overlapping ellipses (5-9 µm across) rendered by Beer-Lambert with the usual
hematoxylin and eosin optical-density vectors, plus a little noise, so colour deconvolution
finds them as it finds real nuclei; `labels` is the instance mask they were drawn from.
"""

from __future__ import annotations

import numpy as np

HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])
EOSIN_OD = np.array([0.07, 0.99, 0.11])


def synthetic_he(height: int = 256, width: int = 256, mpp: float = 0.5, n_nuclei: int = 40,
                 seed: int = 0, tissue: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (h, w, 3) uint8, labels (h, w) int32) of a field at `mpp` µm/px."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), np.int32)
    yy, xx = np.mgrid[:height, :width]
    placed = 0
    for _ in range(n_nuclei * 20):
        if placed == n_nuclei or not tissue:
            break
        a, b = rng.uniform(2.5, 4.5, 2) / mpp  # semi-axes in px
        cy, cx = rng.uniform(a, height - a), rng.uniform(a, width - a)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        disc = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        grown = (u / (a + 1.5 / mpp)) ** 2 + (v / (b + 1.5 / mpp)) ** 2 <= 1.0
        if (labels[grown] != 0).any():
            continue
        placed += 1
        labels[disc] = placed
    h_amount = np.where(labels > 0, rng.uniform(0.9, 1.3), 0.0) if tissue else 0.0
    h_amount = h_amount + (labels > 0) * rng.normal(0, 0.08, labels.shape)
    e_amount = (0.35 + rng.normal(0, 0.04, labels.shape)) if tissue else 0.0
    od = (np.asarray(h_amount)[..., None] * HEMATOXYLIN_OD
          + np.asarray(e_amount)[..., None] * EOSIN_OD)
    rgb = 255.0 * np.exp(-od) + rng.normal(0, 2.0, (height, width, 3))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), labels
