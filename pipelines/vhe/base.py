"""The interface every virtual H&E backend implements.

A backend turns a window of an MxIF slide, shaped (stain, h, w) with its stain names and pixel
size, into transmitted-light RGB shaped (h, w, 3) uint8 on the same pixel grid. Whole slides are
rendered tile by tile (pipelines/vhe/streaming.py): each tile is read with `halo_px` pixels of
context on every side (clipped at the slide border), rendered, and only its core is kept, so a
backend whose output at a pixel depends on a neighbourhood (a convolutional generator) shows no
seams as long as `halo_px` covers that neighbourhood.

Intensity scales differ between slides, so before rendering a slide the streaming pass draws a
uniform pixel sample over the whole slide, shaped (stain, n) in `backend.stains` order, and calls
`backend.calibrate(sample, slide_id)`. The backend returned by `calibrate` renders that slide;
a backend without per-slide state returns itself.

Life cycle of one slide:

    backend = backend.for_stains(reader.info.stains, source=slide_id)  # StainError if missing
    slide_backend = backend.calibrate(sample, slide_id)             # per-slide normalisation
    rgb = slide_backend.render(window, stains, mpp)                 # per tile, window with halo
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pipelines.errors import SlideInputError
from pipelines.stains import require_stains


class VirtualHEBackend(abc.ABC):
    """Renders (stain, h, w) fluorescence windows into (h, w, 3) uint8 virtual H&E."""

    #: Short name stored in the virtual H&E store's attributes ("beer_lambert", "cyclegan").
    name: str = "backend"
    #: Pixels of context the backend needs around a tile, on the slide's grid.
    halo_px: int = 0

    @property
    @abc.abstractmethod
    def stains(self) -> tuple[str, ...]:
        """Canonical names of the stains the backend reads; windows come in this order."""

    def check_stains(self, available: Iterable[str], *, source: str) -> None:
        """Raise StainError naming every stain the rendering needs that `available` lacks."""
        require_stains(available, self.stains, source=source)

    def for_stains(self, available: Sequence[str], *, source: str) -> VirtualHEBackend:
        """The backend to use for a slide with stains `available` (default: check, return self).

        A backend that can render without some stains may return a narrower copy instead.
        """
        self.check_stains(available, source=source)
        return self

    def calibrate(self, sample: np.ndarray, slide_id: str) -> VirtualHEBackend:
        """A backend fitted to one slide from a (stain, n) pixel sample in `stains` order.

        The default has no per-slide state and returns `self`.
        """
        return self

    @abc.abstractmethod
    def render(self, window: np.ndarray, stains: Sequence[str], mpp: float) -> np.ndarray:
        """Virtual H&E of `window` (stain, h, w) named by `stains`, pixel size `mpp` µm/px.

        Returns (h, w, 3) uint8 RGB on the same grid as the window.
        """

    def params(self) -> dict[str, Any]:
        """JSON-serialisable settings, recorded in the store so a rendering can be reproduced."""
        return {}

    # Helpers for implementations.
    def select(self, window: np.ndarray, stains: Sequence[str]) -> np.ndarray:
        """The window's planes in `self.stains` order, as float32 (stain, h, w)."""
        window = np.asarray(window)
        if window.ndim != 3 or window.shape[0] != len(stains):
            raise SlideInputError(
                f"A window for virtual H&E must be (stain, h, w) with {len(stains)} stains; "
                f"got shape {window.shape}."
            )
        self.check_stains(stains, source="window")
        index = [list(stains).index(s) for s in self.stains]
        if index == list(range(len(stains))):
            return window.astype(np.float32, copy=False)
        return window[index].astype(np.float32, copy=False)
