"""The slide source every format's reader is: canonical stains, a settled pixel size and
windows of one stain at a time, decoded only where a window touches the file.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pipelines.errors import SlideInputError, StainError
from pipelines.ingest.mpp import resolve_mpp
from pipelines.stains import canonical_stains, require_stains
from storage.tiles import DEFAULT_TILE_PX

# Planes up to this many bytes are decoded whole: bounded, and fast for small strips.
WHOLE_PLANE_BYTES = 8 * 2**20


@dataclass(frozen=True)
class ReadParams:
    """How a slide is read: window edge in pixels and stains the slide must have."""

    tile_px: int = DEFAULT_TILE_PX
    required_stains: tuple[str, ...] = ()
    # A stain plane up to this size is decoded in one go (much faster for strip-based TIFFs);
    # larger planes are read window by window. 0 always reads window by window.
    whole_plane_bytes: int = WHOLE_PLANE_BYTES
    # The user's own stain aliases (folded name -> stain), from `stains.check_user_aliases`.
    stain_aliases: Mapping[str, str] = field(default_factory=dict)


class StainWindow(NamedTuple):
    """One stain's pixels over [y0, y0 + h) x [x0, x0 + w) of the full-resolution image."""

    stain_index: int
    y0: int
    x0: int
    block: np.ndarray


class SlideSource(ABC):
    """An opened slide file: canonical stains, pixel size and a windowed reader.

    `stains` are canonical names (index = stain index); `source_stains` are the names as the
    file spells them. `mpp` is µm per pixel; `mpp_source` says where it came from
    (`image` metadata or the `manifest`).
    """

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._names: list[str] = []  # stain names as the file spells them
        self.source_stains: tuple[str, ...] = ()
        self.stains: tuple[str, ...] = ()
        self.mpp: float = math.nan
        self.mpp_source: str = ""
        self.mpp_note: str = ""  # why the image's pixel size metadata could not be used
        self.height_px: int = 0
        self.width_px: int = 0
        self.dtype: np.dtype = np.dtype("uint16")
        self.whole_plane_bytes = WHOLE_PLANE_BYTES
        self.tile_px = DEFAULT_TILE_PX
        self._cached: tuple[int, np.ndarray | None] | None = None

    # -- what each format provides -------------------------------------------------------
    @abstractmethod
    def _plane(self, stain_index: int) -> Any:
        """A 2-D array-like (y, x) of one stain at full resolution, sliced lazily."""

    def _whole_plane(self, stain_index: int) -> np.ndarray | None:
        """One stain decoded in one go, for formats where that is faster; None otherwise."""
        return None

    def image_mpp(self) -> float | None:
        """Pixel size the file states, in µm, or None."""
        return None

    def _release(self) -> None:  # noqa: B027 - formats holding no handles need nothing
        """Release the format's file handles."""

    def close(self) -> None:
        """Release file handles and any decoded plane."""
        self._cached = None
        self._release()

    # -- shared behaviour ----------------------------------------------------------------
    def __enter__(self) -> SlideSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.stains), self.height_px, self.width_px)

    @property
    def nbytes(self) -> int:
        return len(self.stains) * self.height_px * self.width_px * self.dtype.itemsize

    def read(self, stain_index: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """One stain over [y0, y1) x [x0, x1), as a new (h, w) array of `self.dtype`."""
        stain = self.stains[stain_index]
        try:
            whole = self._cached_plane(stain_index)
            plane = self._plane(stain_index) if whole is None else whole
            block = plane[y0:y1, x0:x1]
            block = block.copy() if whole is not None else np.asarray(block)
        except (SlideInputError, StainError):
            raise
        except Exception as exc:
            raise SlideInputError(
                f"{self.path}: cannot read stain {stain!r} at y {y0}:{y1}, x {x0}:{x1} "
                f"({type(exc).__name__}: {exc}). The file is damaged or truncated: copy or "
                "export it again."
            ) from exc
        if block.shape != (y1 - y0, x1 - x0):
            raise SlideInputError(
                f"{self.path}: stain {stain!r} gave a {block.shape} block for window "
                f"y {y0}:{y1}, x {x0}:{x1}; the file is inconsistent: export it again."
            )
        return block.astype(self.dtype, copy=False)

    def _cached_plane(self, stain_index: int) -> np.ndarray | None:
        """The whole plane when it is small enough (kept for the stain's next windows)."""
        if self._cached is None or self._cached[0] != stain_index:
            self._cached = None  # drop the previous stain's plane before decoding the next
            plane_bytes = self.height_px * self.width_px * self.dtype.itemsize
            small = plane_bytes <= self.whole_plane_bytes
            self._cached = (stain_index, self._whole_plane(stain_index) if small else None)
        return self._cached[1]

    def windows(self, tile_px: int | None = None) -> Iterator[StainWindow]:
        """Every stain, window by window (stain-major, then row-major); `tile_px` defaults to
        the `ReadParams` the source was opened with."""
        tile_px = self.tile_px if tile_px is None else tile_px
        if tile_px <= 0:
            raise ValueError(f"tile_px must be > 0, got {tile_px}.")
        for index in range(len(self.stains)):
            for y0 in range(0, self.height_px, tile_px):
                for x0 in range(0, self.width_px, tile_px):
                    y1 = min(y0 + tile_px, self.height_px)
                    x1 = min(x0 + tile_px, self.width_px)
                    yield StainWindow(index, y0, x0, self.read(index, y0, x0, y1, x1))

    def _settle(
        self, raw_names: Sequence[str], manifest_mpp: float | None, params: ReadParams
    ) -> None:
        """Canonical stain names and pixel size; raises if either cannot be settled."""
        self.whole_plane_bytes = params.whole_plane_bytes
        self.tile_px = params.tile_px
        self.source_stains = tuple(str(n) for n in raw_names)
        self.stains = tuple(canonical_stains(
            self.source_stains, source=str(self.path), aliases=params.stain_aliases))
        if params.required_stains:
            require_stains(self.stains, params.required_stains, source=str(self.path))
        self.mpp, self.mpp_source = resolve_mpp(
            self.path, self.image_mpp(), manifest_mpp, self.mpp_note
        )
        if self.height_px <= 0 or self.width_px <= 0 or not self.stains:
            raise SlideInputError(
                f"{self.path}: empty image ({len(self.stains)} stains, "
                f"{self.height_px} x {self.width_px} px); export the slide again."
            )
