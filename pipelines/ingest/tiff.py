"""TIFF helpers shared by the TIFF readers: opening a file safely, checking it is not
truncated, and the pixel size its resolution tags state.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tifffile

from pipelines.errors import SlideInputError
from pipelines.ingest.mpp import _plausible, _um_per_unit

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")


class _TiffWarnings(logging.Handler):
    """Collects tifffile's warnings about damaged structure while a file is opened."""

    _DAMAGE = re.compile(r"corrupt|invalid|truncat|out of range|offset", re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self._DAMAGE.search(message):
            self.messages.append(message)


def _open_tiff(path: Path) -> tifffile.TiffFile:
    """Open a TIFF, refusing files tifffile can only half-parse (truncated, damaged IFDs)."""
    handler = _TiffWarnings()
    logger = tifffile.logger()
    logger.addHandler(handler)
    tif = None
    try:
        tif = tifffile.TiffFile(path)
        _ = tif.series  # parsing the series is where damaged IFDs show up
        if tif.is_ome:
            _ = tif.ome_metadata
    except Exception as exc:
        if tif is not None:
            tif.close()
        raise SlideInputError(
            f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); copy or export it again."
        ) from exc
    finally:
        logger.removeHandler(handler)
    if handler.messages:
        tif.close()
        raise SlideInputError(
            f"{path}: the TIFF is damaged or truncated ({handler.messages[0]}); "
            "copy or export it again."
        )
    return tif


def _check_data_in_file(tif: tifffile.TiffFile, pages: Sequence[Any], path: Path) -> None:
    """Every tile/strip of `pages` must lie inside the file (catches truncated copies)."""
    size = tif.filehandle.size
    for number, page in enumerate(pages):
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
        if ends and max(ends) > size:
            raise SlideInputError(
                f"{path}: page {number} needs bytes up to {max(ends)} but the file has {size}; "
                "the file is truncated: copy it again."
            )


def _tiff_resolution_mpp(page: Any, imagej: dict[str, Any] | None = None) -> float | None:
    """µm per pixel from XResolution/ResolutionUnit (inch or cm), or ImageJ's unit; else None."""
    tags = page.tags
    xres, yres = tags.get("XResolution"), tags.get("YResolution")
    if xres is None:
        return None
    unit = tags.get("ResolutionUnit")
    unit_value = int(unit.value) if unit is not None else 2
    um_per = {2: 25_400.0, 3: 10_000.0}.get(unit_value)
    if um_per is None and imagej and _um_per_unit(imagej.get("unit"), None):
        um_per = _um_per_unit(imagej.get("unit"), None)
    if um_per is None:
        return None

    def per_px(tag: Any) -> float:
        num, den = tag.value
        return num / den if den else math.nan

    px_per_unit = per_px(xres)
    if yres is not None:
        y_px_per_unit = per_px(yres)
        if math.isfinite(y_px_per_unit) and y_px_per_unit > 0:
            px_per_unit = (px_per_unit + y_px_per_unit) / 2
    if not (math.isfinite(px_per_unit) and px_per_unit > 0):
        return None
    return _plausible(um_per / px_per_unit)
