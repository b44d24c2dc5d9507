"""Slide readers: OME-TIFF, OME-Zarr, folders of single-stain TIFFs and multi-page TIFFs.

`open_slide_source(path, mpp=...)` recognises the format, maps the stain names through the alias
table (`pipelines.stains`) and settles the pixel size (µm per pixel). The returned source hands
out windows of one stain at a time (`source.windows(tile_px)`), decoding only the TIFF tiles or
Zarr chunks a window touches, so a slide larger than memory streams through in bounded memory.
Nothing here writes files; `storage.slide_ingest` writes the windows into a slide store.

| format           | what it is                                         | stain names from        |
|------------------|----------------------------------------------------|-------------------------|
| `ome-tiff`       | OME-TIFF, tiled or not, BigTIFF, pyramidal         | OME-XML `Channel/@Name` |
| `ome-zarr`       | OME-NGFF 0.4 (Zarr v2) or 0.5 (Zarr v3) multiscale | `omero.channels[].label`|
| `tiff-folder`    | a folder of 2-D TIFFs, one per stain (MIBI export) | file names              |
| `multipage-tiff` | one TIFF, one 2-D page per stain                   | PageName / description  |

One module per format (`ome_tiff`, `ome_zarr`, `tiff_folder`, `multipage_tiff`), the source they
share (`source`), TIFF helpers (`tiff`), pixel-size resolution (`mpp`) and the opener (`reader`).
"""

from pipelines.ingest.mpp import MPP_TOLERANCE, resolve_mpp
from pipelines.ingest.multipage_tiff import MultiPageTiffSource
from pipelines.ingest.ome_tiff import OmeTiffSource
from pipelines.ingest.ome_zarr import OmeZarrSource, is_ome_zarr
from pipelines.ingest.reader import describe, open_slide_source
from pipelines.ingest.source import (
    DEFAULT_TILE_PX,
    WHOLE_PLANE_BYTES,
    ReadParams,
    SlideSource,
    StainWindow,
)
from pipelines.ingest.tiff import TIFF_SUFFIXES
from pipelines.ingest.tiff_folder import TiffFolderSource, tiff_files

__all__ = [
    "DEFAULT_TILE_PX",
    "MPP_TOLERANCE",
    "TIFF_SUFFIXES",
    "WHOLE_PLANE_BYTES",
    "MultiPageTiffSource",
    "OmeTiffSource",
    "OmeZarrSource",
    "ReadParams",
    "SlideSource",
    "StainWindow",
    "TiffFolderSource",
    "describe",
    "is_ome_zarr",
    "open_slide_source",
    "resolve_mpp",
    "tiff_files",
]
