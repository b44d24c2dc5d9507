"""The one protocol every nucleus segmentation backend follows.

A backend segments one window of a slide: the nuclear stain (and optionally a membrane stain)
as float32 (h, w) arrays plus the pixel size in µm, and returns an int32 label image of the same
shape, 0 = background, each nucleus one positive label (labels need not be consecutive).
Tiling, halos, stitching and global relabelling are done around it (pipelines/segment/stitching.py),
so a backend never sees more than one window and never needs to know where the window lies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np

from pipelines.stains import NUCLEAR_STAIN
from storage.slide_store import SlideInfo

# Default stains the backends read: the paper segments on DAPI with Muc2 as the membrane input.
DEFAULT_NUCLEAR_STAINS: tuple[str, ...] = (NUCLEAR_STAIN,)
DEFAULT_MEMBRANE_STAIN: str | None = "Muc2"
# The MxIF backends by name, as a type for typed settings and as the tuple to list them.
SegmentBackend = Literal["watershed", "import", "mesmer", "mesmer-onnx"]
BACKENDS: tuple[str, ...] = get_args(SegmentBackend)


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


@runtime_checkable
class CalibratedSegmenter(Protocol):
    """A backend that fixes slide-wide settings (e.g. a threshold) from a sample of the slide.

    `smooth` is applied to nuclear-stain windows before sampling; `calibrate` returns the
    calibrated backend. The tiler calls both before segmenting, so every tile of a slide is
    treated alike.
    """

    def smooth(self, nuclear: np.ndarray, mpp: float) -> np.ndarray: ...

    def calibrate(self, smoothed_sample: Iterable[np.ndarray], mpp: float) -> NucleusSegmenter: ...


@runtime_checkable
class LabelSource(Protocol):
    """Labels that already exist for the slide (the `import` backend): read a window of them."""

    name: str
    shape: tuple[int, int]
    dtype: np.dtype
    description: str

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray: ...


class SlideLike(Protocol):
    """What segmentation and quantification read from a slide (storage's SlideReader fits)."""

    info: SlideInfo

    def read(
        self,
        y0: int = 0,
        x0: int = 0,
        y1: int | None = None,
        x1: int | None = None,
        stains: Sequence[str] | None = None,
    ) -> np.ndarray: ...


class ArraySlide:
    """An in-memory slide (stain, y, x) with the reader interface, for tests and small fields."""

    def __init__(self, image: np.ndarray, stains: Sequence[str], mpp: float, slide_id: str) -> None:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[0] != len(stains):
            raise ValueError(f"Expected (stain, y, x), {len(stains)} stains; got {image.shape}.")
        self.image = image
        self.info = SlideInfo(
            slide_id=slide_id,
            stains=tuple(stains),
            mpp=float(mpp),
            height_px=int(image.shape[1]),
            width_px=int(image.shape[2]),
            dtype=str(image.dtype),
        )

    def read(self, y0=0, x0=0, y1=None, x1=None, stains=None) -> np.ndarray:
        y1 = self.info.height_px if y1 is None else y1
        x1 = self.info.width_px if x1 is None else x1
        if stains is None:
            return self.image[:, y0:y1, x0:x1]
        index = [self.info.stains.index(s) for s in stains]
        return self.image[index, y0:y1, x0:x1]


class ArrayMask:
    """An in-memory label image with the MaskReader interface."""

    def __init__(self, labels: np.ndarray, slide_id: str) -> None:
        self.labels = np.asarray(labels)
        self.slide_id = slide_id
        self.height_px, self.width_px = (int(s) for s in self.labels.shape)

    def read(self, y0=0, x0=0, y1=None, x1=None) -> np.ndarray:
        y1 = self.height_px if y1 is None else y1
        x1 = self.width_px if x1 is None else x1
        return self.labels[y0:y1, x0:x1]
