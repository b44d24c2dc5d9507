"""Nucleus segmentation of real H&E slides, tile by tile, behind one interface and one registry.

An H&E backend segments one RGB window: `segment_rgb(rgb, mpp)` takes an (h, w, 3) uint8
window and the pixel size in µm and returns integer labels of the window's shape (0 =
background), as the MxIF backends of pipelines/segment/base.py do for a stain window.
`halo_for(mpp)` is the context it wants around each tile core. A backend that fixes slide-wide
settings (a threshold) also has `sample(rgb, mpp)` (values of one window to calibrate on) and
`calibrate(samples, mpp)` (returns the calibrated backend), called before any tile is
segmented so every tile of a slide is treated alike. Windows are stitched by the same
no-split rule as MxIF slides (pipelines/segment/stitching.py); the `import` backend (a
`LabelSource`: masks or QuPath GeoJSON) goes through the same checks as for MxIF slides.

Backends are looked up by name in `HE_BACKENDS`: name -> "module:factory", imported when
first used, so a backend with heavy dependencies costs nothing until chosen. A factory takes
the backend's settings (a mapping; unknown keys are an error of the factory) and returns the
backend. Add one with `register_he_backend("name", "pipelines.segment.mine:build")`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipelines.errors import ConfigurationError
from pipelines.he_stains import RGBSlide
from pipelines.segment.base import LabelSource
from pipelines.segment.imported import BinaryMask, imported_blocks
from pipelines.segment.stitching import LabelStitcher
from storage.tiles import DEFAULT_TILE_PX, Tile, tile_grid

# name -> "module:factory"; `import` is handled by the caller (it needs a file, not settings).
HE_BACKENDS: dict[str, str] = {
    "he-classical": "pipelines.segment.he_classical:build",
    "he-learned": "pipelines.segment.he_learned:build",  # weights from he_nucleus_model
}
IMPORT_BACKEND = "import"
CALIBRATION_VALUES = 2_000_000


@runtime_checkable
class HENucleusSegmenter(Protocol):
    """Segments nuclei in one RGB window of an H&E slide."""

    name: str

    def halo_for(self, mpp: float) -> int: ...

    def segment_rgb(self, rgb: np.ndarray, mpp: float) -> np.ndarray: ...


@runtime_checkable
class CalibratedHESegmenter(Protocol):
    """An H&E backend that fixes slide-wide settings from a sample of the slide."""

    def sample(self, rgb: np.ndarray, mpp: float) -> np.ndarray: ...

    def calibrate(self, samples: Iterable[np.ndarray], mpp: float) -> HENucleusSegmenter: ...


def register_he_backend(name: str, target: str) -> None:
    """Make `name` choosable as an H&E backend; `target` is "module:factory"."""
    if ":" not in target:
        raise ConfigurationError(f"H&E backend target {target!r} must read 'module:factory'.")
    HE_BACKENDS[name] = target


def he_backend_names() -> tuple[str, ...]:
    """Every choosable H&E backend name, `import` included."""
    return (*HE_BACKENDS, IMPORT_BACKEND)


def build_he_backend(name: str, settings: Mapping[str, Any] | None = None) -> HENucleusSegmenter:
    """The backend registered as `name`, built from its settings."""
    if name not in HE_BACKENDS:
        raise ConfigurationError(
            f"Unknown H&E segmentation backend {name!r}; choose one of "
            f"{', '.join(he_backend_names())}."
        )
    module, attribute = HE_BACKENDS[name].split(":", 1)
    factory: Callable[[Mapping[str, Any]], HENucleusSegmenter] = getattr(
        importlib.import_module(module), attribute)
    backend = factory(dict(settings or {}))
    if not isinstance(backend, HENucleusSegmenter):
        raise ConfigurationError(
            f"H&E backend {name!r} ({HE_BACKENDS[name]}) gave {type(backend).__name__}, which "
            "lacks `name`, `halo_for(mpp)` or `segment_rgb(rgb, mpp)`."
        )
    return backend


@dataclass
class HESlideSegmentation:
    """Iterate for `(tile, int32 labels)` over tile cores; `n_nuclei` and `details` after."""

    slide: RGBSlide
    backend: HENucleusSegmenter | LabelSource
    tile_px: int = DEFAULT_TILE_PX
    halo_px: int | None = None
    binary_mask: BinaryMask = "refuse"
    n_nuclei: int = 0
    details: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tile_px < 64:
            raise ConfigurationError(f"tile_px must be at least 64 pixels, got {self.tile_px}.")

    def __iter__(self) -> Iterator[tuple[Tile, np.ndarray]]:
        slide = self.slide
        if isinstance(self.backend, LabelSource):
            blocks = imported_blocks(self.backend, slide.slide_id, slide.height_px,
                                     slide.width_px, self.tile_px, slide.mpp, self.binary_mask)
            yield from blocks
            self.n_nuclei = blocks.n_nuclei
            self.details.update(backend=self.backend.name, source=self.backend.description,
                                connected_components=blocks.connected_components)
            return
        backend = self.backend
        if isinstance(backend, CalibratedHESegmenter):
            backend = backend.calibrate(self._samples(backend), slide.mpp)
            self.details.update(getattr(backend, "calibration", lambda: {})())
        halo = self.halo_px if self.halo_px is not None else int(backend.halo_for(slide.mpp))
        stitcher = LabelStitcher(slide.height_px, slide.width_px, self.tile_px, halo)
        for index, tile in enumerate(stitcher.tiles):
            rgb = slide.read(tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1)
            labels = backend.segment_rgb(rgb, slide.mpp)
            if labels.shape != rgb.shape[:2] or not np.issubdtype(labels.dtype, np.integer):
                raise ConfigurationError(
                    f"H&E backend {backend.name!r} returned {labels.dtype} labels shaped "
                    f"{labels.shape} for a window shaped {rgb.shape[:2]} of slide "
                    f"{slide.slide_id!r}; it must return integer labels of the window's shape."
                )
            yield tile, stitcher.add(index, labels.astype(np.int32, copy=False))
        self.n_nuclei = stitcher.n_labels
        self.details.update(backend=backend.name, tile_px=self.tile_px, halo_px=halo)

    def _samples(self, backend: CalibratedHESegmenter) -> Iterator[np.ndarray]:
        """The backend's calibration values on a slide-wide lattice of every stride-th pixel."""
        slide = self.slide
        stride = max(1, int(np.ceil(np.sqrt(slide.height_px * slide.width_px
                                            / CALIBRATION_VALUES))))
        context = 32
        for tile in tile_grid(slide.height_px, slide.width_px, self.tile_px, context):
            values = backend.sample(
                slide.read(tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1), slide.mpp)
            sy = (-tile.y0) % stride + (tile.y0 - tile.read_y0)
            sx = (-tile.x0) % stride + (tile.x0 - tile.read_x0)
            yield values[sy : tile.y1 - tile.read_y0 : stride, sx : tile.x1 - tile.read_x0 : stride]


def segment_he_slide(slide: RGBSlide, backend: HENucleusSegmenter | LabelSource,
                     tile_px: int = DEFAULT_TILE_PX, halo_px: int | None = None,
                     binary_mask: BinaryMask = "refuse") -> HESlideSegmentation:
    """Nucleus labels of a whole H&E slide as `(tile, int32 block)` pairs, in grid order."""
    return HESlideSegmentation(slide, backend, tile_px, halo_px, binary_mask)


class ArrayRGBSlide:
    """An in-memory RGB slide (y, x, 3) uint8 with the reader interface, for tests and fields."""

    def __init__(self, rgb: np.ndarray, mpp: float, slide_id: str) -> None:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"Expected (y, x, 3) uint8, got {rgb.dtype} {rgb.shape}.")
        self.rgb, self.mpp, self.slide_id = rgb, float(mpp), slide_id
        self.height_px, self.width_px = (int(s) for s in rgb.shape[:2])

    def read(self, y0: int = 0, x0: int = 0, y1: int | None = None,
             x1: int | None = None) -> np.ndarray:
        return self.rgb[y0:y1, x0:x1]
