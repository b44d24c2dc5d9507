"""OME-TIFF reader: the first image's full-resolution level, stain names from the OME-XML
`Channel/@Name`, pixel size from `PhysicalSizeX`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from pipelines.errors import SlideInputError
from pipelines.ingest.mpp import MPP_TOLERANCE, _plausible, _um_per_unit
from pipelines.ingest.source import SlideSource
from pipelines.ingest.tiff import _check_data_in_file


class _StainOf:
    """Slices one stain out of a (stain, y, x) array-like lazily."""

    def __init__(self, array: Any, index: int) -> None:
        self._array, self._index = array, index

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return self._array[(self._index, *key)]


def _xml_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class OmeTiffSource(SlideSource):
    """OME-TIFF: the first image's full-resolution level, read through tifffile's Zarr store."""

    format = "ome-tiff"

    def __init__(self, path: Path, tif: tifffile.TiffFile) -> None:
        super().__init__(path)
        self._tif = tif
        series = tif.series[0]
        axes = series.axes
        if axes not in ("YX", "CYX"):
            raise SlideInputError(
                f"{path}: image axes {axes!r} (shape {series.shape}) are not supported; export "
                "one plane per stain with axes C, Y, X (no Z stack, time or RGB samples)."
            )
        _check_data_in_file(tif, series.levels[0].pages, path)
        self._store = series.aszarr(level=0)
        self._array = zarr.open_array(self._store, mode="r")
        self._axes = axes
        self.height_px, self.width_px = (int(s) for s in series.shape[-2:])
        self.dtype = np.dtype(series.dtype)
        pixels = self._pixels_meta()
        self._pixels = pixels
        n_stains = 1 if axes == "YX" else int(series.shape[0])
        channels = _xml_list(pixels.get("Channel"))
        names = [c.get("Name") if isinstance(c, dict) else None for c in channels]
        if len(names) != n_stains or any(not n for n in names):
            raise SlideInputError(
                f"{path}: the OME-XML names {sum(bool(n) for n in names)} of {n_stains} stains "
                f"({names}); give every Channel a Name attribute (the stain) and export it again."
            )
        self._names = [str(n) for n in names]

    def _pixels_meta(self) -> dict[str, Any]:
        meta = tifffile.xml2dict(self._tif.ome_metadata or "<OME/>")
        images = _xml_list((meta.get("OME") or {}).get("Image"))
        return dict((images[0] if images else {}).get("Pixels") or {})

    def image_mpp(self) -> float | None:
        p = self._pixels
        x, y = p.get("PhysicalSizeX"), p.get("PhysicalSizeY")
        if x is None:
            return None
        if _um_per_unit(p.get("PhysicalSizeXUnit")) is None:
            self.mpp_note = (
                f"the OME-XML PhysicalSizeXUnit {p.get('PhysicalSizeXUnit')!r} is not a "
                "length unit"
            )
            return None
        x_um = float(x) * (_um_per_unit(p.get("PhysicalSizeXUnit")) or math.nan)
        y_um = float(y) * (_um_per_unit(p.get("PhysicalSizeYUnit")) or math.nan) if y else x_um
        if math.isfinite(y_um) and abs(x_um - y_um) > MPP_TOLERANCE * x_um:
            raise SlideInputError(
                f"{self.path}: pixels are not square ({x_um:g} x {y_um:g} µm); resample the "
                "slide to square pixels before ingest."
            )
        return _plausible(x_um)

    def _plane(self, stain_index: int) -> Any:
        return self._array if self._axes == "YX" else _StainOf(self._array, stain_index)

    def _whole_plane(self, stain_index: int) -> np.ndarray | None:
        return self._tif.series[0].pages[stain_index].asarray()

    def _release(self) -> None:
        self._store.close()
        self._tif.close()
