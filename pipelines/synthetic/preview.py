"""False-colour RGB view of an MxIF image, for previews in the UI and the README."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# stain -> RGB weight: nuclei blue, epithelium green, stroma/muscle red, immune magenta/yellow.
_COLOURS: dict[str, tuple[float, float, float]] = {
    "DAPI": (0.0, 0.25, 1.0), "PanCK": (0.0, 1.0, 0.0), "Muc2": (0.0, 0.6, 0.6),
    "SMA": (1.0, 0.0, 0.0), "Vimentin": (0.6, 0.2, 0.0), "CD45": (1.0, 0.0, 1.0),
    "CD3d": (1.0, 1.0, 0.0),
}


def false_colour(image: np.ndarray, stains: Sequence[str], step: int = 1) -> np.ndarray:
    """An (h, w, 3) uint8 image mixing a few stains (each scaled to its 1-99.5 % range).

    `image` is (stain, y, x); `step` subsamples rows and columns for small previews.
    """
    sub = image[:, ::step, ::step]
    rgb = np.zeros((*sub.shape[1:], 3), dtype=np.float32)
    for stain, colour in _COLOURS.items():
        if stain not in stains:
            continue
        plane = sub[list(stains).index(stain)].astype(np.float32)
        lo, hi = np.percentile(plane, [1.0, 99.5])
        scaled = np.clip((plane - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
        rgb += scaled[..., None] * np.asarray(colour, dtype=np.float32)
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
