"""Nucleus segmentation of whole slides, tile by tile, behind one interface.

`segment_slide(slide, backend, params)` yields `(tile, labels)` for every tile core of the slide
in row-major order: int32 slide-wide nucleus labels (0 = background) on the slide's own grid,
ready to be written block by block into the mask store. `backend` is either a
`NucleusSegmenter` (watershed, mesmer-onnx, ...; segments windows with a halo, stitched by
pipelines/segment/stitching.py) or a `LabelSource` (the `import` backend; labels read as they
are, checked and converted to int32). Memory stays at a few windows whatever the slide size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.errors import ConfigurationError
from pipelines.segment.base import (
    BACKENDS,
    DEFAULT_MEMBRANE_STAIN,
    DEFAULT_NUCLEAR_STAINS,
    CalibratedSegmenter,
    LabelSource,
    NucleusSegmenter,
    SlideLike,
)
from pipelines.segment.imported import BinaryMask, imported_blocks
from pipelines.segment.stitching import LabelStitcher
from pipelines.stains import canonical_stain, require_stains
from storage.tiles import DEFAULT_TILE_PX, Tile

__all__ = [
    "BACKENDS",
    "CalibratedSegmenter",
    "LabelSource",
    "NucleusSegmenter",
    "SegmentParams",
    "SlideSegmentation",
    "nuclear_image",
    "segment_slide",
]

CALIBRATION_VALUES = 2_000_000


@dataclass(frozen=True)
class SegmentParams:
    """How a slide is cut into windows and which stains the backend sees.

    tile_px: core size of a tile (pixels); halo_px: context around each core, None = the
    backend's own hint at the slide's pixel size. nuclear_stains: averaged into the nuclear
    image (e.g. ("HH3", "Nuc") for MIBI). membrane_stain: passed when the slide has it.
    """

    tile_px: int = DEFAULT_TILE_PX
    halo_px: int | None = None
    nuclear_stains: tuple[str, ...] = DEFAULT_NUCLEAR_STAINS
    membrane_stain: str | None = DEFAULT_MEMBRANE_STAIN
    calibration_values: int = CALIBRATION_VALUES
    # `import` backend: "refuse" a mask that looks binary, or label it by "connected_components".
    binary_mask: BinaryMask = "refuse"

    def __post_init__(self) -> None:
        if self.tile_px < 64:
            raise ConfigurationError(f"tile_px must be at least 64 pixels, got {self.tile_px}.")
        if self.halo_px is not None and self.halo_px < 0:
            raise ConfigurationError(f"halo_px must be >= 0, got {self.halo_px}.")
        if not self.nuclear_stains:
            raise ConfigurationError("Name at least one nuclear stain (e.g. DAPI).")


@dataclass
class SlideSegmentation:
    """Iterate for `(tile, labels)`; afterwards `n_nuclei` and `details` describe the run."""

    slide: SlideLike
    backend: NucleusSegmenter | LabelSource
    params: SegmentParams = SegmentParams()
    n_nuclei: int = 0
    details: dict[str, object] = field(default_factory=dict)

    def __iter__(self) -> Iterator[tuple[Tile, np.ndarray]]:
        if isinstance(self.backend, LabelSource):
            yield from self._imported()
        elif isinstance(self.backend, NucleusSegmenter):
            yield from self._segmented()
        else:
            raise ConfigurationError(
                f"{type(self.backend).__name__} is not a segmentation backend: it needs "
                "`segment(nuclear, membrane, mpp)` or `read(y0, x0, y1, x1)`."
            )

    def _imported(self) -> Iterator[tuple[Tile, np.ndarray]]:
        info = self.slide.info
        blocks = imported_blocks(self.backend, info.slide_id, info.height_px, info.width_px,
                                 self.params.tile_px, info.mpp, self.params.binary_mask)
        yield from blocks
        self.n_nuclei = blocks.n_nuclei
        self.details.update(backend=self.backend.name, source=self.backend.description,
                            relabelled=blocks.relabelled,
                            connected_components=blocks.connected_components)

    def _segmented(self) -> Iterator[tuple[Tile, np.ndarray]]:
        info = self.slide.info
        nuclear_stains, membrane = _stains_for(info.stains, self.params, info.slide_id)
        backend = self.backend
        halo = self.params.halo_px
        if halo is None:
            halo_for = getattr(backend, "halo_for", None)
            halo = int(halo_for(info.mpp)) if halo_for else int(backend.halo_px)
        if isinstance(backend, CalibratedSegmenter):
            backend = backend.calibrate(self._sample(backend, nuclear_stains), info.mpp)
            level = getattr(backend, "level", None)
            if level is not None:
                self.details["threshold"] = float(level)
        stitcher = LabelStitcher(info.height_px, info.width_px, self.params.tile_px, halo)
        for index, tile in enumerate(stitcher.tiles):
            window = (tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1)
            nuclear = nuclear_image(self.slide.read(*window, stains=nuclear_stains))
            membrane_image = None
            if membrane is not None:
                membrane_image = self.slide.read(*window, stains=[membrane])[0].astype(np.float32)
            labels = backend.segment(nuclear, membrane_image, info.mpp)
            _check_labels(labels, nuclear.shape, backend.name, info.slide_id)
            yield tile, stitcher.add(index, labels)
        self.n_nuclei = stitcher.n_labels
        self.details.update(backend=backend.name, tile_px=self.params.tile_px, halo_px=halo,
                            nuclear_stains=list(nuclear_stains), membrane_stain=membrane)

    def _sample(self, backend: CalibratedSegmenter, stains: Sequence[str]) -> Iterator[np.ndarray]:
        """Smoothed nuclear values on a slide-wide grid of every `stride`-th pixel."""
        info = self.slide.info
        stride = max(1, int(np.ceil(np.sqrt(info.height_px * info.width_px
                                            / self.params.calibration_values))))
        context = 32
        for y0 in range(0, info.height_px, self.params.tile_px):
            for x0 in range(0, info.width_px, self.params.tile_px):
                y1 = min(y0 + self.params.tile_px, info.height_px)
                x1 = min(x0 + self.params.tile_px, info.width_px)
                ry0, rx0 = max(0, y0 - context), max(0, x0 - context)
                ry1, rx1 = min(info.height_px, y1 + context), min(info.width_px, x1 + context)
                smoothed = backend.smooth(
                    nuclear_image(self.slide.read(ry0, rx0, ry1, rx1, stains=stains)), info.mpp
                )
                sy = (-y0) % stride + (y0 - ry0)
                sx = (-x0) % stride + (x0 - rx0)
                yield smoothed[sy : y1 - ry0 : stride, sx : x1 - rx0 : stride]


def segment_slide(
    slide: SlideLike,
    backend: NucleusSegmenter | LabelSource,
    params: SegmentParams = SegmentParams(),
) -> SlideSegmentation:
    """Nucleus labels of a whole slide as `(tile, int32 block)` pairs, tile cores in grid order."""
    return SlideSegmentation(slide, backend, params)


def nuclear_image(windows: np.ndarray) -> np.ndarray:
    """The mean of the nuclear stains of a (stain, h, w) window as float32 (h, w)."""
    windows = np.asarray(windows)
    if windows.shape[0] == 1:
        return windows[0].astype(np.float32)
    return windows.astype(np.float32).mean(axis=0)


def _stains_for(
    stains: Sequence[str], params: SegmentParams, slide_id: str
) -> tuple[list[str], str | None]:
    nuclear = [canonical_stain(s) for s in params.nuclear_stains]
    require_stains(stains, nuclear, source=f"slide {slide_id!r} (nuclear stain for segmentation)")
    membrane = canonical_stain(params.membrane_stain) if params.membrane_stain else None
    if membrane is not None and membrane not in stains:
        membrane = None
    return nuclear, membrane


def _check_labels(labels: np.ndarray, shape: tuple[int, ...], backend: str, slide_id: str) -> None:
    if labels.shape != shape or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigurationError(
            f"Backend {backend!r} returned {labels.dtype} labels shaped {labels.shape} for a "
            f"window shaped {shape} of slide {slide_id!r}; it must return integer labels of the "
            "window's shape."
        )
