"""The one protocol every nucleus segmentation backend follows.

A backend segments one window of a slide: the nuclear stain (and optionally a membrane stain)
as float32 (h, w) arrays plus the pixel size in µm, and returns an int32 label image of the same
shape, 0 = background, each nucleus one positive label (labels need not be consecutive).
Tiling, halos, stitching and global relabelling are done around it (pipelines/segment/stitching.py),
so a backend never sees more than one window and never needs to know where the window lies.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

# Default stains the backends read: the paper segments on DAPI with Muc2 as the membrane input.
DEFAULT_NUCLEAR_STAINS: tuple[str, ...] = ("DAPI",)
DEFAULT_MEMBRANE_STAIN: str | None = "Muc2"
BACKENDS: tuple[str, ...] = ("watershed", "import", "mesmer", "mesmer-onnx")


@runtime_checkable
class NucleusSegmenter(Protocol):
    """Segments nuclei in one window.

    `name` identifies the backend in metadata (e.g. "watershed"); `halo_px` is the context (in
    pixels at the slide's mpp) the backend wants around each tile core so that every nucleus
    whose centroid lies in the core is seen whole; the tiler may use a larger halo.
    """

    name: str
    halo_px: int

    def segment(
        self, nuclear: np.ndarray, membrane: np.ndarray | None, mpp: float
    ) -> np.ndarray:
        """int32 labels (h, w), 0 = background, for `nuclear` (h, w) float32 at `mpp` µm/px."""
        ...
