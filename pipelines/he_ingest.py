"""Readers for real H&E slides: RGB TIFF (OME-TIFF, tiled, pyramidal, Aperio SVS), PNG, JPEG.

`open_he_source(path, mpp=...)` opens the slide, checks that it is 8-bit RGB and settles its
pixel size (the manifest's `mpp` wins; else OME `PhysicalSizeX`, the `MPP = ...` field of an
SVS description, or the TIFF resolution tags; every value judged by storage/pixel_size.py).
`source.read(y0, x0, y1, x1)` returns an (h, w, 3) uint8 window, decoding only the TIFF tiles
it touches. `stream_he(source, write, ...)` hands every window to a writer at the slide's grid
and resampled to the patch grid (0.5 µm/px), the two levels of the virtual-H&E store layout,
so patch extraction and inference read a real slide as they read a virtual one. Nothing here
writes files.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from pipelines.errors import SlideInputError
from pipelines.ingest.mpp import _um_per_unit, resolve_mpp
from pipelines.ingest.ome_tiff import _xml_list
from pipelines.ingest.tiff import (
    TIFF_SUFFIXES,
    _check_data_in_file,
    _open_tiff,
    _tiff_resolution_mpp,
)
from pipelines.patches import PATCH_MPP, ResampleGrid
from pipelines.vhe.streaming import _write_level
from storage.tiles import DEFAULT_TILE_PX, tile_grid

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
HE_SUFFIXES = (*TIFF_SUFFIXES, ".svs", *IMAGE_SUFFIXES)
# PNG and JPEG are decoded whole: fine for fields, not for slides.
MAX_IMAGE_PIXELS = 100_000_000
# Glass transmits nearly all light: a pixel is tissue when its mean optical density exceeds
# this (natural log units; 0.1 is about 90 % transmission in every channel).
TISSUE_OD = 0.1
_SVS_MPP = re.compile(r"\bMPP\s*=\s*([0-9.eE+-]+)")

WriteLevel = Callable[[int, int, int, np.ndarray], None]


class HESource:
    """An opened RGB slide: `height_px`, `width_px`, `mpp` (µm/px), `mpp_source`, `format`."""

    format = ""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.height_px = 0
        self.width_px = 0
        self.mpp = math.nan
        self.mpp_source = ""
        self.mpp_note = ""

    def _window(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        raise NotImplementedError

    def image_mpp(self) -> float | None:
        return None

    def close(self) -> None:
        """Release file handles."""

    def __enter__(self) -> HESource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """RGB over [y0, y1) x [x0, x1) as a new (h, w, 3) uint8 array."""
        try:
            block = np.asarray(self._window(y0, x0, y1, x1))
        except SlideInputError:
            raise
        except Exception as exc:
            raise SlideInputError(
                f"{self.path}: cannot read the H&E window y {y0}:{y1}, x {x0}:{x1} "
                f"({type(exc).__name__}: {exc}). The file is damaged or truncated: copy or "
                "export it again."
            ) from exc
        if block.shape != (y1 - y0, x1 - x0, 3):
            raise SlideInputError(
                f"{self.path}: window y {y0}:{y1}, x {x0}:{x1} came back {block.shape}; the "
                "file is inconsistent: export it again."
            )
        return np.ascontiguousarray(block, dtype=np.uint8)

    def _settle(self, manifest_mpp: float | None) -> None:
        if self.height_px <= 0 or self.width_px <= 0:
            raise SlideInputError(f"{self.path}: empty image ({self.height_px} x "
                                  f"{self.width_px} px); export the slide again.")
        self.mpp, self.mpp_source = resolve_mpp(self.path, self.image_mpp(), manifest_mpp,
                                                self.mpp_note)


def _not_rgb(path: Path, what: str) -> SlideInputError:
    return SlideInputError(
        f"{path}: {what}, not an RGB H&E image. Export the H&E as 8-bit RGB (3 samples per "
        "pixel); a fluorescence slide belongs in the manifest with modality mxif."
    )


class TiffHESource(HESource):
    """The first series' full-resolution level of an RGB TIFF (OME-TIFF, SVS, pyramidal)."""

    def __init__(self, path: Path, tif: tifffile.TiffFile) -> None:
        super().__init__(path)
        self._tif = tif
        series = tif.series[0]
        self.format = "svs" if tif.is_svs else "ome-tiff" if tif.is_ome else "tiff"
        shape, axes = tuple(int(s) for s in series.shape), series.axes
        if axes in ("YXS", "YXC") and shape[-1] in (3, 4):
            self._samples_last = True
        elif axes in ("SYX", "CYX") and shape[0] == 3:
            self._samples_last = False
        elif len(shape) == 2 or (len(shape) == 3 and 1 in (shape[0], shape[-1])):
            raise _not_rgb(path, f"one channel per pixel (shape {shape}, axes {axes})")
        else:
            raise _not_rgb(path, f"image axes {axes!r} with shape {shape}")
        if np.dtype(series.dtype) != np.uint8:
            raise SlideInputError(
                f"{path}: the RGB samples are {series.dtype}; H&E ingest reads 8-bit RGB: "
                "export the slide as 8-bit (uint8) RGB."
            )
        _check_data_in_file(tif, series.levels[0].pages, path)
        self._store = series.aszarr(level=0)
        self._array = zarr.open_array(self._store, mode="r")
        if self._samples_last:
            self.height_px, self.width_px = shape[0], shape[1]
        else:
            self.height_px, self.width_px = shape[1], shape[2]
        self._page = series.levels[0].pages[0]

    def _window(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        if self._samples_last:
            return self._array[y0:y1, x0:x1, :3]
        return np.moveaxis(self._array[:3, y0:y1, x0:x1], 0, -1)

    def image_mpp(self) -> float | None:
        if self._tif.is_ome:
            mpp = self._ome_mpp()
            if mpp is not None:
                return mpp
        if self._tif.is_svs:
            found = _SVS_MPP.search(self._tif.pages[0].description or "")
            if found:
                return float(found.group(1))
            self.mpp_note = "the SVS description has no MPP field"
        return _tiff_resolution_mpp(self._page, self._tif.imagej_metadata)

    def _ome_mpp(self) -> float | None:
        meta = tifffile.xml2dict(self._tif.ome_metadata or "<OME/>")
        images = _xml_list((meta.get("OME") or {}).get("Image"))
        pixels = dict((images[0] if images else {}).get("Pixels") or {})
        size = pixels.get("PhysicalSizeX")
        factor = _um_per_unit(pixels.get("PhysicalSizeXUnit"))
        if size is None or factor is None:
            return None
        return float(size) * factor

    def close(self) -> None:
        self._store.close()
        self._tif.close()


class ImageHESource(HESource):
    """A PNG or JPEG field, decoded whole (refused above `MAX_IMAGE_PIXELS`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                self.format = (image.format or path.suffix.lstrip(".")).lower()
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise SlideInputError(
                        f"{path}: {width} x {height} px is too large for a PNG/JPEG field; "
                        "convert the slide to a tiled TIFF (e.g. with vips tiffsave --tile)."
                    )
                mode = image.mode
                if mode in ("L", "LA", "I", "I;16", "F", "1"):
                    raise _not_rgb(path, f"a greyscale image (mode {mode})")
                dpi = image.info.get("dpi")
                image.load()
                rgb = image.convert("RGB") if mode != "RGB" else image
                self._rgb = np.asarray(rgb, dtype=np.uint8)
        except SlideInputError:
            raise
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise SlideInputError(
                f"{path}: not a readable PNG or JPEG ({type(exc).__name__}: {exc}); the file is "
                "damaged or truncated: copy or export it again."
            ) from exc
        self.height_px, self.width_px = self._rgb.shape[:2]
        self._dpi = dpi

    def _window(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        return self._rgb[y0:y1, x0:x1]

    def image_mpp(self) -> float | None:
        if not self._dpi:
            return None
        dpi = float(self._dpi[0])
        return 25_400.0 / dpi if dpi > 0 else None

    def close(self) -> None:
        self._rgb = np.zeros((0, 0, 3), np.uint8)


def open_he_source(path: str | Path, mpp: float | None = None) -> HESource:
    """Open a real H&E slide; errors name the file and say what to do."""
    path = Path(path)
    if not path.is_file():
        raise SlideInputError(f"{path}: no H&E slide file here; fix the manifest's path.")
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        source: HESource = ImageHESource(path)
    elif name.endswith((*TIFF_SUFFIXES, ".svs")):
        source = TiffHESource(path, _open_tiff(path))
    else:
        raise SlideInputError(
            f"{path}: unknown H&E format; use an RGB TIFF/OME-TIFF/SVS ({', '.join(HE_SUFFIXES)})."
        )
    try:
        source._settle(mpp)
    except Exception:
        source.close()
        raise
    return source


def describe_he(source: HESource) -> dict[str, Any]:
    """Where the slide came from, for the store's attributes."""
    return {"source_path": str(source.path), "format": source.format,
            "mpp_source": source.mpp_source}


@dataclass(frozen=True)
class HEIngestSummary:
    """What streaming a slide saw: tiles, tissue share, mean RGB of tissue, time."""

    n_tiles: int
    tissue_fraction: float
    mean_tissue_rgb: tuple[float, float, float]
    seconds: float

    @property
    def has_tissue(self) -> bool:
        return self.tissue_fraction > 0.0


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels that absorb light (mean optical density above `TISSUE_OD`), i.e. not glass."""
    od = -np.log((rgb.astype(np.float32) + 1.0) / 256.0)
    return od.mean(axis=-1) > TISSUE_OD


def patch_level_grid(mpp: float) -> ResampleGrid:
    """The resampling from the slide's grid to the patch grid (0.5 µm/px)."""
    return ResampleGrid.between(mpp, PATCH_MPP)


def stream_he(source: HESource, write: WriteLevel, tile_px: int = DEFAULT_TILE_PX,
              grid: ResampleGrid | None = None) -> HEIngestSummary:
    """Call `write(level, y0, x0, rgb)` for every tile core at the slide's grid (level 0) and,
    with `grid`, resampled to it (level 1); tiles are whole grid periods, so level 1 equals
    the whole slide resampled at once. Memory holds one window."""
    started = time.perf_counter()
    height, width = source.height_px, source.width_px
    halo = 0
    if grid is not None:
        tile_px = grid.align(tile_px)
        halo = grid.align(math.ceil(2 * grid.scale) + 1)
    n_tiles, n_tissue, rgb_sum = 0, 0, np.zeros(3, np.float64)
    for tile in tile_grid(height, width, tile_px, halo):
        window = source.read(tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1)
        core = window[tile.core_in_window]
        write(0, tile.y0, tile.x0, core)
        if grid is not None:
            _write_level(write, grid, tile, window, height, width)
        tissue = tissue_mask(core)
        n_tissue += int(tissue.sum())
        rgb_sum += core[tissue].sum(axis=0, dtype=np.float64)
        n_tiles += 1
    mean = rgb_sum / max(n_tissue, 1)
    return HEIngestSummary(n_tiles, n_tissue / max(height * width, 1),
                           (float(mean[0]), float(mean[1]), float(mean[2])),
                           time.perf_counter() - started)
