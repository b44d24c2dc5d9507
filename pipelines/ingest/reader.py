"""Opening a slide in any supported format (`open_slide_source`) and what to remember of
where it came from (`describe`).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.errors import SlideInputError
from pipelines.ingest.multipage_tiff import MultiPageTiffSource
from pipelines.ingest.ome_tiff import OmeTiffSource
from pipelines.ingest.ome_zarr import OmeZarrSource, is_ome_zarr
from pipelines.ingest.source import ReadParams, SlideSource
from pipelines.ingest.tiff import _open_tiff
from pipelines.ingest.tiff_folder import TiffFolderSource

# The defaults, a frozen value shared by every call that gives none.
_DEFAULT_PARAMS = ReadParams()


def open_slide_source(
    path: str | Path, *, mpp: float | None = None, params: ReadParams = _DEFAULT_PARAMS
) -> SlideSource:
    """Open a slide in any supported format, with canonical stains and a settled pixel size.

    `mpp` is the manifest's pixel size (µm per pixel, None if it has none). Raises
    `SlideInputError` (unreadable file, no pixel size, bad shapes) or `StainError` (duplicate or
    missing stains), each naming the file. Use it as a context manager to close file handles.
    """
    path = Path(path)
    if not path.exists():
        raise SlideInputError(f"{path}: no such file or folder; fix the path in the manifest.")
    if path.is_dir():
        if is_ome_zarr(path):
            source: SlideSource = OmeZarrSource(path)
        else:
            source = TiffFolderSource(path)
    else:
        tif = _open_tiff(path)
        try:
            source = OmeTiffSource(path, tif) if tif.is_ome else MultiPageTiffSource(path, tif)
        except BaseException:
            tif.close()
            raise
    try:
        source._settle(source._names, mpp, params)
    except BaseException:
        source.close()
        raise
    return source


def describe(source: SlideSource) -> dict[str, str]:
    """What to remember about where a slide came from (strings only, for store attributes)."""
    return {
        "path": str(source.path),
        "format": source.format,
        "mpp_source": source.mpp_source,
        "source_stains": json.dumps(list(source.source_stains)),
        **_mibi_masses(source),
    }


def _mibi_masses(source: SlideSource) -> dict[str, str]:
    """A MIBItiff's isotope mass (Da) per canonical stain, kept out of the stain names."""
    masses = getattr(source, "stain_masses_da", None) or {}
    by_stain = {
        stain: masses[raw]
        for raw, stain in zip(source.source_stains, source.stains, strict=True)
        if raw in masses
    }
    return {"stain_masses_da": json.dumps(by_stain)} if by_stain else {}
