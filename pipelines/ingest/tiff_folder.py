"""TIFF-folder reader: a folder of single-stain TIFFs (a MIBI or Cell DIVE export), each
file's name being its stain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipelines.errors import SlideInputError
from pipelines.ingest.mpp import MPP_TOLERANCE
from pipelines.ingest.source import SlideSource
from pipelines.ingest.tiff import (
    TIFF_SUFFIXES,
    _check_data_in_file,
    _open_tiff,
    _tiff_resolution_mpp,
)
from storage.pixel_size import mpp_problem


def _stain_name_from_file(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", *TIFF_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def tiff_files(folder: Path) -> list[Path]:
    """The visible TIFF files directly in `folder`, sorted by name."""
    return sorted(
        (p for p in Path(folder).iterdir()
         if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(TIFF_SUFFIXES)),
        key=lambda p: p.name,
    )


class TiffFolderSource(SlideSource):
    """A folder of single-stain TIFFs (e.g. a MIBI or Cell DIVE export): file name = stain.

    Stains are ordered by file name. Each file is opened only while its stain is read.
    """

    format = "tiff-folder"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        files = tiff_files(path)
        if not files:
            raise SlideInputError(f"{path}: the folder holds no TIFF files (.tif/.tiff).")
        shapes: list[tuple[int, ...]] = []
        dtypes: list[np.dtype] = []
        mpps: list[float | None] = []
        for file in files:
            with _open_tiff(file) as tif:
                series = tif.series[0]
                shape = tuple(int(s) for s in series.shape)
                if len(shape) != 2:
                    raise SlideInputError(
                        f"{file}: shape {shape}; a folder slide needs one 2-D image per stain file."
                    )
                _check_data_in_file(tif, series.levels[0].pages, file)
                shapes.append(shape)
                dtypes.append(np.dtype(series.dtype))
                mpps.append(_tiff_resolution_mpp(series.pages[0], tif.imagej_metadata))
        for file, shape in zip(files, shapes, strict=True):
            if shape != shapes[0]:
                raise SlideInputError(
                    f"{path}: stain file {file.name} is {shape[0]} x {shape[1]} px but "
                    f"{files[0].name} is {shapes[0][0]} x {shapes[0][1]} px; every stain of a "
                    "slide must have the same shape: re-export the mismatched file."
                )
        # Writers' defaults (72 dpi) on some files do not count against the stated size.
        given = [m for m in mpps if m is not None]
        stated = [m for m in given if mpp_problem(m) is None]
        if stated and max(stated) - min(stated) > MPP_TOLERANCE * min(stated):
            raise SlideInputError(
                f"{path}: the stain files state different pixel sizes ({min(stated):g} to "
                f"{max(stated):g} µm); fix their resolution tags or give mpp in the manifest."
            )
        self._files = files
        self._mpp = stated[0] if stated else (given[0] if given else None)
        self.height_px, self.width_px = shapes[0]
        self.dtype = np.result_type(*dtypes)
        self._names = [_stain_name_from_file(f) for f in files]
        self._open: tuple[int, Any, Any, Any] | None = None

    def image_mpp(self) -> float | None:
        return self._mpp

    def _whole_plane(self, stain_index: int) -> np.ndarray | None:
        self._close_plane()
        with _open_tiff(self._files[stain_index]) as tif:
            return tif.series[0].levels[0].asarray()

    def _plane(self, stain_index: int) -> Any:
        if self._open is None or self._open[0] != stain_index:
            self._close_plane()
            tif = _open_tiff(self._files[stain_index])
            store = tif.series[0].aszarr(level=0)
            self._open = (stain_index, tif, store, zarr.open_array(store, mode="r"))
        return self._open[3]

    def _close_plane(self) -> None:
        if self._open is not None:
            self._open[2].close()
            self._open[1].close()
            self._open = None

    def _release(self) -> None:
        self._close_plane()
