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
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tifffile
import zarr

from pipelines.errors import SlideInputError, StainError
from pipelines.mibitiff import parse_mibi_description
from pipelines.stains import canonical_stains, require_stains
from storage.pixel_size import MPP_RANGE_UM, mpp_problem

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
DEFAULT_TILE_PX = 1024
# Planes up to this many bytes are decoded whole: bounded, and fast for small strips.
WHOLE_PLANE_BYTES = 8 * 2**20
# Manifest and image pixel sizes that differ by more than this are reported.
MPP_TOLERANCE = 0.01

_UM_PER_UNIT = {
    "pm": 1e-6, "picometer": 1e-6,
    "å": 1e-4, "angstrom": 1e-4,
    "nm": 1e-3, "nanometer": 1e-3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0,
    "mm": 1e3, "millimeter": 1e3,
    "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6,
}


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


def resolve_mpp(
    path: Path, image_mpp: float | None, manifest_mpp: float | None, image_note: str = ""
) -> tuple[float, str]:
    """The pixel size to use (µm per pixel) and where it came from.

    The manifest's `mpp` wins when given (a user's explicit statement); otherwise the image's.
    Either must lie in `storage.pixel_size.MPP_RANGE_UM`; an implausible image value (a writer's
    default) is ignored when the manifest gives one. A disagreement of more than 1 % is reported
    as a warning. `image_note` says why the image's metadata gave no value, for the error.
    """
    low, high = MPP_RANGE_UM
    if image_mpp is not None:
        problem = mpp_problem(image_mpp)
        if problem:
            image_note = (
                f"the image metadata states {float(image_mpp):.6g} µm per pixel, which is not "
                f"a pixel size ({problem})"
            )
            image_mpp = None
    if manifest_mpp is not None and not math.isnan(float(manifest_mpp)):
        manifest_mpp = float(manifest_mpp)
        problem = mpp_problem(manifest_mpp)
        if problem:
            raise SlideInputError(
                f"{path}: the manifest's mpp for this slide is {manifest_mpp:.6g}, which is not "
                f"a pixel size ({problem}). Give µm per pixel between {low:g} and {high:g} "
                "(e.g. 0.32) in the slide's manifest row."
            )
        if image_mpp is not None and abs(image_mpp - manifest_mpp) > MPP_TOLERANCE * manifest_mpp:
            warnings.warn(
                f"{path}: the image says {image_mpp:.6g} µm/px, the manifest {manifest_mpp:.6g}; "
                "using the manifest's.",
                stacklevel=2,
            )
        return manifest_mpp, "manifest"
    if image_mpp is not None:
        return float(image_mpp), "image"
    raise SlideInputError(
        f"{path}: no pixel size: {image_note or 'the image metadata states none'} and the "
        "manifest gives no mpp. Add an mpp column (µm per pixel, e.g. 0.32) to the slide's row "
        "in the manifest."
    )


def _plausible(mpp: float | None) -> float | None:
    """A stated pixel size, kept as stated (NaN: none); `resolve_mpp` judges its range."""
    if mpp is None or math.isnan(mpp):
        return None
    return mpp


def _um_per_unit(unit: str | None, default: float | None = 1.0) -> float | None:
    if unit is None or unit == "":
        return default
    return _UM_PER_UNIT.get(str(unit).strip().lower())


# ---------------------------------------------------------------------------------------
# TIFF helpers
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------
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


def _ngff_level0(path: Path, multiscales: Any) -> tuple[dict, dict]:
    """The first multiscale and its full-resolution dataset, refusing malformed metadata."""

    def malformed(what: str) -> SlideInputError:
        return SlideInputError(
            f"{path}: malformed OME-NGFF 'multiscales' metadata: {what}. Write the image again "
            "with an OME-Zarr writer (e.g. ome-zarr-py), or export OME-TIFF."
        )

    if not isinstance(multiscales, list) or not isinstance(multiscales[0], dict):
        shown = json.dumps(multiscales, default=str)[:80]
        raise malformed(f"expected a list of objects, found {shown}")
    meta = multiscales[0]
    datasets = meta.get("datasets")
    if not (isinstance(datasets, list) and datasets and isinstance(datasets[0], dict)
            and isinstance(datasets[0].get("path"), str)):
        raise malformed("multiscales[0].datasets must be a list of objects, each with a 'path'")
    axes = meta.get("axes", [])
    named = [a.get("name") if isinstance(a, dict) else a for a in axes] if isinstance(axes, list) \
        else [None]
    if any(not isinstance(name, str) for name in named):
        raise malformed("multiscales[0].axes must be a list of names or objects with a 'name'")
    return meta, datasets[0]


class OmeZarrSource(SlideSource):
    """OME-NGFF multiscale image: level 0, `omero` channel labels, scale transform for mpp."""

    format = "ome-zarr"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            group = zarr.open_group(store=str(path), mode="r")
            attrs = dict(group.attrs)
        except Exception as exc:
            raise SlideInputError(
                f"{path}: not a readable Zarr group ({type(exc).__name__}: {exc})."
            ) from exc
        attrs = dict(attrs.get("ome", attrs))
        multiscales = attrs.get("multiscales")
        if not multiscales:
            raise SlideInputError(
                f"{path}: a Zarr group without OME-NGFF 'multiscales' metadata; write it as "
                "OME-Zarr (e.g. with ome-zarr-py) or export OME-TIFF."
            )
        scale_meta, dataset = _ngff_level0(path, multiscales)
        axes = [a["name"] if isinstance(a, dict) else str(a) for a in scale_meta.get("axes", [])]
        units = [a.get("unit") if isinstance(a, dict) else None for a in scale_meta.get("axes", [])]
        try:
            array = group[dataset["path"]]
        except KeyError as exc:
            raise SlideInputError(
                f"{path}: level 0 ({dataset['path']!r}) named in the multiscales metadata is "
                "missing; copy the whole .zarr folder again."
            ) from exc
        if not axes:  # NGFF 0.1/0.2 had no axes: always t, c, z, y, x
            axes = ["t", "c", "z", "y", "x"][-array.ndim :]
            units = [None] * len(axes)
        if len(axes) != array.ndim or axes[-2:] != ["y", "x"]:
            raise SlideInputError(
                f"{path}: axes {axes} do not end in y, x for shape {array.shape}."
            )
        index: list[Any] = []
        for name, size in zip(axes[:-2], array.shape[:-2], strict=True):
            if name == "c":
                index.append(slice(None))
            elif size == 1:
                index.append(0)
            else:
                raise SlideInputError(
                    f"{path}: axis {name!r} has {size} planes; a slide must be one plane per "
                    "stain (no Z stack or time series)."
                )
        self._array = array
        self._index = tuple(index)
        self._has_c = "c" in axes
        self.height_px, self.width_px = (int(s) for s in array.shape[-2:])
        self.dtype = np.dtype(array.dtype)
        n_stains = int(array.shape[axes.index("c")]) if self._has_c else 1
        omero = attrs.get("omero")
        channels = (omero.get("channels") if isinstance(omero, dict) else None) or []
        channels = channels if isinstance(channels, list) else []
        names = [c.get("label") if isinstance(c, dict) else None for c in channels]
        if len(names) != n_stains or not all(names):
            raise SlideInputError(
                f"{path}: the omero metadata labels {len([n for n in names if n])} of {n_stains} "
                "stains; give every omero channel a 'label' (the stain name)."
            )
        self._names = [str(n) for n in names]
        self._mpp = self._scale_mpp(scale_meta, dataset, axes, units)

    def _scale_mpp(
        self, meta: dict, dataset: dict, axes: list[str], units: list[str | None]
    ) -> float | None:
        """µm per pixel along x from the scale transforms and the axis unit; None (with
        `mpp_note` saying why) when the metadata states no usable pixel size."""
        scale = np.ones(len(axes))
        for transforms in (dataset.get("coordinateTransformations"),
                           meta.get("coordinateTransformations")):
            for t in transforms if isinstance(transforms, list) else []:
                if not (isinstance(t, dict) and t.get("type") == "scale" and "scale" in t):
                    continue
                try:
                    factor = np.asarray(t["scale"], dtype=float)
                except (TypeError, ValueError):
                    factor = None
                if factor is None or factor.shape != scale.shape:
                    raise SlideInputError(
                        f"{self.path}: the OME-NGFF scale transform {t['scale']!r} is not a "
                        f"list of {len(axes)} numbers (one per axis {axes}); fix the "
                        "multiscales metadata, or write the image again."
                    )
                scale = scale * factor
        x = axes.index("x")
        unit = units[x]
        if unit is None and scale[x] == 1.0:
            return None  # no unit and unit scale: the writer did not know the pixel size
        um = _um_per_unit(unit)
        if um is None:
            self.mpp_note = (
                f"the OME-Zarr axis 'x' has unit {unit!r}, which is not a length unit (use "
                "micrometer, nanometer or millimeter)"
            )
            return None
        if not scale[x] > 0:
            self.mpp_note = (
                f"the OME-Zarr scale of axis 'x' is {scale[x]:g}, and a pixel size must be > 0"
            )
            return None
        return _plausible(float(scale[x]) * um)

    def image_mpp(self) -> float | None:
        return self._mpp

    def _plane(self, stain_index: int) -> Any:
        prefix = tuple(stain_index if isinstance(i, slice) else i for i in self._index)
        return _Prefixed(self._array, prefix)


class _Prefixed:
    def __init__(self, array: Any, prefix: tuple[int, ...]) -> None:
        self._array, self._prefix = array, prefix

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return self._array[(*self._prefix, *key)]


def is_ome_zarr(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and any(
        (path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup")
    )


def open_slide_source(
    path: str | Path, *, mpp: float | None = None, params: ReadParams = ReadParams()
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
