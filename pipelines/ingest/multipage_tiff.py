"""Multi-page TIFF reader: one 2-D page per stain, named by PageName, ImageJ Labels or a
one-line ImageDescription (MIBItiff pages by their target).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from pipelines.errors import SlideInputError
from pipelines.ingest.source import SlideSource
from pipelines.ingest.tiff import _check_data_in_file, _tiff_resolution_mpp
from pipelines.mibitiff import parse_mibi_description


def _page_name(page: Any) -> str | None:
    mibi = parse_mibi_description(page.description)
    if mibi is not None:  # an IONpath MIBItiff page: the target is the stain, without its mass
        return mibi.target
    tag = page.tags.get("PageName")
    if tag is not None and str(tag.value).strip():
        return str(tag.value).strip()
    description = (page.description or "").strip()
    # A plain one-line name; JSON, XML and key=value descriptions are other writers' metadata.
    if description and "\n" not in description and not re.search(r"[{}<>=]", description):
        return description
    return None


class MultiPageTiffSource(SlideSource):
    """A plain TIFF whose full-resolution pages are the stains, each named by PageName,
    ImageJ Labels or a one-line ImageDescription."""

    format = "multipage-tiff"

    def __init__(self, path: Path, tif: tifffile.TiffFile) -> None:
        super().__init__(path)
        self._tif = tif
        pages = [p for p in tif.pages if not (int(p.subfiletype) & 1)]
        for number, page in enumerate(pages):
            if page.ndim != 2 or page.samplesperpixel != 1:
                raise SlideInputError(
                    f"{path}: page {number} has shape {page.shape}; a multi-page slide needs one "
                    "2-D single-sample page per stain. Export it as OME-TIFF instead."
                )
            if page.shape != pages[0].shape:
                raise SlideInputError(
                    f"{path}: page {number} is {page.shape}, page 0 is {pages[0].shape}; all "
                    "stains of a slide must have the same shape."
                )
        _check_data_in_file(tif, pages, path)
        self._pages = pages
        self.height_px, self.width_px = (int(s) for s in pages[0].shape)
        self.dtype = np.result_type(*(np.dtype(p.dtype) for p in pages))
        self._names = self._stain_names(path, tif, pages)
        mibi = [parse_mibi_description(p.description) for p in pages]
        self.stain_masses_da = {
            m.target: m.mass_da for m in mibi if m is not None and m.mass_da is not None
        }
        self._open: tuple[int, Any, Any] | None = None

    @staticmethod
    def _stain_names(path: Path, tif: tifffile.TiffFile, pages: Sequence[Any]) -> list[str]:
        names = [_page_name(p) for p in pages]
        if all(names):
            return [str(n) for n in names]
        labels = (tif.imagej_metadata or {}).get("Labels")
        if isinstance(labels, list) and len(labels) == len(pages) and all(labels):
            return [str(n) for n in labels]
        missing = [i for i, n in enumerate(names) if not n]
        raise SlideInputError(
            f"{path}: page(s) {missing[:10]} carry no stain name. Name each page with a "
            "PageName tag or a one-line ImageDescription, or export the slide as OME-TIFF "
            "with channel names."
        )

    def image_mpp(self) -> float | None:
        return _tiff_resolution_mpp(self._pages[0], self._tif.imagej_metadata)

    def _whole_plane(self, stain_index: int) -> np.ndarray | None:
        return self._pages[stain_index].asarray()

    def _plane(self, stain_index: int) -> Any:
        if self._open is None or self._open[0] != stain_index:
            self._close_plane()
            store = self._pages[stain_index].aszarr()
            self._open = (stain_index, store, zarr.open_array(store, mode="r"))
        return self._open[2]

    def _close_plane(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def _release(self) -> None:
        self._close_plane()
        self._tif.close()
