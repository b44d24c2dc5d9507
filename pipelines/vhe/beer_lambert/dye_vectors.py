"""Hematoxylin and eosin optical-density vectors measured on real H&E pixels."""

from __future__ import annotations

import numpy as np

from pipelines.errors import SlideInputError
from pipelines.vhe.beer_lambert.absorptions import Vector3


def estimate_dye_vectors(rgb: np.ndarray, dark_fraction: float = 0.03) -> tuple[Vector3, Vector3]:
    """Hematoxylin and eosin unit OD vectors measured on real H&E pixels (n, 3) uint8.

    Eosin: mean OD of light pink tissue (R > B, total OD 0.3-1.2). Hematoxylin: mean OD of the
    darkest `dark_fraction` of pixels (nuclei) minus that eosin, as nuclei also hold eosin.
    """
    rgb = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    od = -np.log((rgb + 1.0) / 256.0)
    total = od.sum(axis=1)
    pink = od[(rgb[:, 0] - rgb[:, 2] > 8) & (total > 0.3) & (total < 1.2)]
    dark = od[total >= np.quantile(total, 1.0 - dark_fraction)]
    if len(pink) == 0 or len(dark) == 0:
        raise SlideInputError("The H&E pixels hold no pink stroma or no dark nuclei to measure.")
    eosin = pink.mean(axis=0)
    hema = dark.mean(axis=0) - eosin
    e, h = eosin / np.linalg.norm(eosin), hema / np.linalg.norm(hema)
    return (
        tuple(float(round(v, 3)) for v in h),  # type: ignore[return-value]
        tuple(float(round(v, 3)) for v in e),  # type: ignore[return-value]
    )
