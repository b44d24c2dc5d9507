"""Virtual H&E of one slide: RGB uint8 on the slide's grid plus a level at the patch resolution.

Layout (plain Zarr v3, at layout.vhe_zarr(slide_id)):

    <slide_id>.zarr/        attrs: kind="virtual_he", slide_id, backend, params,
                                   levels [{"path": "0", "mpp": ...}, {"path": "1", "mpp": 0.5}]
      0    (y, x, 3) uint8, the slide's own grid (same height and width as the MxIF slide)
      1    (y, x, 3) uint8 at `levels[1].mpp` (0.5 µm/px by default)

Open it with plain zarr: `zarr.open_group(path)["1"][y0:y1, x0:x1]` is an RGB window at
0.5 µm/px. The group appears only when rendering finished (atomic publish, as slide stores).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from storage.errors import StoreLayoutError
from storage.fs import as_path
from storage.layout import validate_slide_id
from storage.zarr_io import default_compressors, new_group, open_group

KIND = "virtual_he"
DEFAULT_CHUNK_PX = 1024


@dataclass(frozen=True)
class VirtualHELevel:
    """One resolution level: pixel size, shape, and square chunk side (best: the tile size)."""

    mpp: float
    height_px: int
    width_px: int
    chunk_px: int = DEFAULT_CHUNK_PX


class VirtualHEWriter:
    """Receives tiles of each level; attributes can be completed before the store is published."""

    def __init__(self, group: zarr.Group, arrays: list[zarr.Array]) -> None:
        self._group = group
        self._arrays = arrays

    def write(self, level: int, y0: int, x0: int, rgb: np.ndarray) -> None:
        """Write an (h, w, 3) uint8 block of `level` at (y0, x0)."""
        h, w, _ = rgb.shape
        self._arrays[level][y0 : y0 + h, x0 : x0 + w] = rgb

    def update_attrs(self, attrs: dict[str, Any]) -> None:
        self._group.attrs.update(attrs)


@contextmanager
def create_vhe(
    path: Path,
    slide_id: str,
    levels: Sequence[VirtualHELevel],
    backend: str,
    params: dict[str, Any] | None = None,
) -> Iterator[VirtualHEWriter]:
    """A virtual H&E store with one array per level (level 0: the slide's grid).

    Published atomically when the block exits cleanly, replacing an older rendering.
    """
    validate_slide_id(slide_id)
    if not levels:
        raise StoreLayoutError(f"A virtual H&E store for {slide_id!r} needs at least one level.")
    with new_group(path, KIND) as group:
        arrays = []
        for i, level in enumerate(levels):
            h, w, c = level.height_px, level.width_px, level.chunk_px
            arrays.append(
                group.create_array(
                    str(i), shape=(h, w, 3),
                    chunks=(max(1, min(c, h)), max(1, min(c, w)), 3),
                    dtype="uint8", compressors=default_compressors(1), fill_value=255,
                    dimension_names=("y", "x", "rgb"),
                )
            )
        group.attrs.update(
            {
                "slide_id": slide_id,
                "backend": backend,
                "params": params or {},
                "levels": [{"path": str(i), "mpp": float(lv.mpp)} for i, lv in enumerate(levels)],
            }
        )
        yield VirtualHEWriter(group, arrays)


class VirtualHEReader:
    """Read RGB windows of a slide's virtual H&E at any of its levels."""

    def __init__(self, path: Path) -> None:
        self.path = as_path(path)
        group = open_group(self.path, KIND)
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.slide_id: str = self.attrs["slide_id"]
        self.backend: str = self.attrs["backend"]
        self.params: dict[str, Any] = dict(self.attrs.get("params", {}))
        self.level_mpp: tuple[float, ...] = tuple(float(v["mpp"]) for v in self.attrs["levels"])
        self._arrays = [group[v["path"]] for v in self.attrs["levels"]]

    @property
    def mpp(self) -> float:
        return self.level_mpp[0]

    def shape(self, level: int = 0) -> tuple[int, int]:
        h, w, _ = self._arrays[level].shape
        return int(h), int(w)

    @property
    def height_px(self) -> int:
        return self.shape(0)[0]

    @property
    def width_px(self) -> int:
        return self.shape(0)[1]

    def level_of(self, mpp: float, rel_tol: float = 1e-3) -> int:
        for i, m in enumerate(self.level_mpp):
            if abs(m - mpp) <= rel_tol * mpp:
                return i
        raise StoreLayoutError(
            f"{self.path} has no level at {mpp} µm/px (levels: {list(self.level_mpp)}); "
            "re-materialise virtual_he."
        )

    def read(
        self, y0: int = 0, x0: int = 0, y1: int | None = None, x1: int | None = None,
        level: int = 0,
    ) -> np.ndarray:
        """An (h, w, 3) uint8 window of `level`."""
        arr = self._arrays[level]
        y1 = arr.shape[0] if y1 is None else y1
        x1 = arr.shape[1] if x1 is None else x1
        return np.asarray(arr[y0:y1, x0:x1])


def open_vhe(path: Path) -> VirtualHEReader:
    return VirtualHEReader(path)
