"""OME-NGFF 0.4 images that napari (napari-ome-zarr) and QuPath open, with nucleus labels.

NGFF 0.4 is Zarr v2 (`.zgroup`, `.zattrs`, `.zarray`): the version QuPath's OME-Zarr reader
and writer implement and napari-ome-zarr reads; 0.5 (Zarr v3) is not read by every viewer yet.
One image, as `write_ome_zarr` lays it out:

    <name>.ome.zarr/     .zattrs: multiscales (axes c, y, x; y and x in micrometer; one scale
                         per level), omero (channel labels, colours, display windows)
      0, 1, ...          (c, y, x) levels, each half the size of the one before, until the
                         largest side fits one tile
      labels/nuclei/     .zattrs: multiscales (y, x) + image-label (source ../../);
        0, 1, ...        int32 nucleus labels on the same levels (0 = background)

Every level is written tile by tile: level 0 from the caller's reader, each further level from
the level just written (2x2 mean for the image, every other pixel for the labels), so no level
is ever held whole in memory. The image folder appears only when complete (storage/atomic.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import zarr
from numcodecs import Blosc

from storage.atomic import atomic_path, remove_own_temporaries
from storage.errors import StoreLayoutError
from storage.fs import StoragePath, as_path
from storage.tiles import DEFAULT_TILE_PX, tile_grid

NGFF_VERSION = "0.4"
LABEL_NAME = "nuclei"
# y, x: (y0, x0, y1, x1) -> the (c, h, w) window of level 0 (images) or (h, w) (labels)
WindowReader = Callable[[int, int, int, int], np.ndarray]


@dataclass(frozen=True)
class NgffImage:
    """What the writer needs of a source image: names, colours (RRGGBB hex), pixel size in µm
    and a reader of level-0 windows (c, h, w)."""

    name: str
    channels: tuple[str, ...]
    colours: tuple[str, ...]
    mpp: float
    height_px: int
    width_px: int
    dtype: str
    read: WindowReader


@dataclass(frozen=True)
class NgffWritten:
    path: StoragePath
    level_shapes: tuple[tuple[int, int], ...]
    n_chunks: int


def level_shapes(height_px: int, width_px: int, tile_px: int) -> list[tuple[int, int]]:
    """Level 0 and each halving after it, until the largest side fits one tile."""
    shapes = [(height_px, width_px)]
    while max(shapes[-1]) > tile_px:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def _compressor() -> Blosc:
    return Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)


def _axes(with_channel: bool) -> list[dict]:
    space = [{"name": a, "type": "space", "unit": "micrometer"} for a in ("y", "x")]
    return ([{"name": "c", "type": "channel"}] if with_channel else []) + space


def _multiscales(name: str, mpp: float, n_levels: int, with_channel: bool) -> list[dict]:
    lead = [1.0] if with_channel else []
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": [*lead, mpp * 2 ** k, mpp * 2 ** k]}]}
        for k in range(n_levels)]
    return [{"version": NGFF_VERSION, "name": name, "axes": _axes(with_channel),
             "datasets": datasets, "type": "mean" if with_channel else "nearest"}]


def _omero(image: NgffImage, windows: Sequence[tuple[float, float]]) -> dict:
    info = np.iinfo(image.dtype) if np.dtype(image.dtype).kind in "ui" else None
    low, high = (float(info.min), float(info.max)) if info else (0.0, 1.0)
    channels = [{"label": label, "color": colour, "active": True, "coefficient": 1.0,
                 "family": "linear", "inverted": False,
                 "window": {"min": low, "max": high, "start": start, "end": end}}
                for label, colour, (start, end) in zip(image.channels, image.colours, windows,
                                                       strict=True)]
    return {"name": image.name, "version": NGFF_VERSION, "channels": channels,
            "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0}}


def _halve(block: np.ndarray, labels: bool) -> np.ndarray:
    """One level down: every other pixel (labels), else the mean of each 2x2 block (an odd
    edge repeats its last row/column)."""
    if labels:
        return block[..., ::2, ::2]
    h, w = block.shape[-2:]
    padded = np.pad(block, [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
    lead = padded.shape[:-2]
    quads = padded.reshape(*lead, padded.shape[-2] // 2, 2, padded.shape[-1] // 2, 2)
    mean = quads.astype(np.float32).mean(axis=(-3, -1))
    if np.dtype(block.dtype).kind in "ui":
        return np.rint(mean).astype(block.dtype)
    return mean.astype(block.dtype)


def _write_levels(group: zarr.Group, n_channels: int | None, dtype: str,
                  shapes: Sequence[tuple[int, int]], read: WindowReader, tile_px: int) -> int:
    """Every level of one multiscale image into `group`; returns the chunks written."""
    labels = n_channels is None
    lead = () if labels else (n_channels,)
    arrays = [group.create_array(
        str(k), shape=(*lead, h, w), dtype=dtype, fill_value=0, compressors=_compressor(),
        chunks=(*((1,) if lead else ()), min(tile_px, h), min(tile_px, w)),
        chunk_key_encoding={"name": "v2", "separator": "/"})
        for k, (h, w) in enumerate(shapes)]
    n = 0
    for k, (h, w) in enumerate(shapes):
        for t in tile_grid(h, w, tile_px):
            if k == 0:
                arrays[k][..., t.y0:t.y1, t.x0:t.x1] = read(t.y0, t.x0, t.y1, t.x1)
            else:  # one channel at a time: a (2 tile)^2 window of one plane in memory
                below, window = arrays[k - 1], np.s_[2 * t.y0:2 * t.y1, 2 * t.x0:2 * t.x1]
                for c in (None,) if labels else range(n_channels):
                    plane = (() if c is None else (c,))
                    arrays[k][(*plane, slice(t.y0, t.y1), slice(t.x0, t.x1))] = _halve(
                        np.asarray(below[(*plane, *window)]), labels)[:t.y1 - t.y0,
                                                                       :t.x1 - t.x0]
            n += 1
    return n


def _windows(group: zarr.Group, last: int, n_channels: int) -> list[tuple[float, float]]:
    """Display range per channel: 0.1st to 99.9th percentile of the smallest level."""
    small = np.asarray(group[str(last)])
    return [(float(np.percentile(small[c], 0.1)), float(np.percentile(small[c], 99.9)))
            for c in range(n_channels)]


def write_ome_zarr(path: StoragePath, image: NgffImage, labels: WindowReader | None = None,
                   tile_px: int = DEFAULT_TILE_PX) -> NgffWritten:
    """Write `image` (and, if given, its nucleus labels on the same grid) as one NGFF 0.4
    image at `path`, replacing an older export atomically."""
    if len(image.channels) != len(image.colours):
        raise StoreLayoutError(f"{image.name}: {len(image.channels)} channel names for "
                               f"{len(image.colours)} colours.")
    shapes = level_shapes(image.height_px, image.width_px, tile_px)
    remove_own_temporaries(path)
    with atomic_path(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        n = _write_levels(root, len(image.channels), image.dtype, shapes, image.read, tile_px)
        root.attrs.update({
            "multiscales": _multiscales(image.name, image.mpp, len(shapes), True),
            "omero": _omero(image, _windows(root, len(shapes) - 1, len(image.channels))),
        })
        if labels is not None:
            holder = root.create_group("labels")
            holder.attrs["labels"] = [LABEL_NAME]
            mask = holder.create_group(LABEL_NAME)
            n += _write_levels(mask, None, "int32", shapes, labels, tile_px)
            mask.attrs.update({
                "multiscales": _multiscales(LABEL_NAME, image.mpp, len(shapes), False),
                "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}},
            })
    return NgffWritten(as_path(path), tuple(shapes), n)
