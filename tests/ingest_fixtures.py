"""Small slide files in every format ingest reads, written with tifffile and zarr directly."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile
import zarr


def stain_stack(n_stains: int, height: int, width: int, dtype: str = "uint16", seed: int = 0):
    """Distinct, reproducible pixels per stain (a gradient plus noise, offset by stain)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 1.0
    planes = [
        (yy * 3 + xx * 5 + 97 * s + rng.integers(0, 50, (height, width))) % (top // 2)
        for s in range(n_stains)
    ]
    return np.stack(planes).astype(dtype)


def write_ome_tiff(
    path: Path,
    data: np.ndarray,
    names: Sequence[str],
    mpp: float | None = 0.32,
    unit: str = "µm",
    tile: tuple[int, int] | None = (256, 256),
    bigtiff: bool = False,
    pyramid_levels: int = 0,
) -> Path:
    """An OME-TIFF (C, Y, X) with channel names, physical size and optional sub-IFD pyramid."""
    metadata: dict = {"axes": "CYX", "Channel": {"Name": list(names)}}
    if mpp is not None:
        metadata.update(PhysicalSizeX=mpp, PhysicalSizeY=mpp,
                        PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    with tifffile.TiffWriter(path, bigtiff=bigtiff, ome=True) as tw:
        tw.write(data, tile=tile, compression="zlib", subifds=pyramid_levels or None,
                 metadata=metadata)
        level = data
        for _ in range(pyramid_levels):
            level = level[:, ::2, ::2]
            tw.write(level, tile=tile, compression="zlib", subfiletype=1, metadata=None)
    return Path(path)


def _noise(tile: int, noise: bool) -> np.ndarray:
    """Sensor-like noise (6 bits), repeated every `tile` pixels, so files compress realistically."""
    if not noise:
        return np.zeros((tile, tile), dtype=np.int64)
    return np.random.default_rng(12345).integers(0, 64, (tile, tile), dtype=np.int64)


def write_big_ome_tiff(
    path: Path, n_stains: int, height: int, width: int, names: Sequence[str],
    mpp: float = 0.32, tile: int = 512, dtype: str = "uint16", noise: bool = False,
) -> Path:
    """A large tiled BigTIFF written tile by tile, so the test never holds it in memory.

    Pixels are `big_tiff_pixels`: a gradient per stain, plus repeating noise if `noise`
    (realistic compression, slower to write and read).
    """
    pattern = _noise(tile, noise)

    def tiles() -> Iterator[np.ndarray]:
        yy, xx = np.mgrid[0:tile, 0:tile]
        for s in range(n_stains):
            for y0 in range(0, height, tile):
                for x0 in range(0, width, tile):
                    yield ((yy + y0) * 3 + (xx + x0) + 1000 * s + pattern).astype(dtype)

    tifffile.imwrite(
        path, tiles(), shape=(n_stains, height, width), dtype=dtype, tile=(tile, tile),
        bigtiff=True, ome=True, compression="zlib",
        metadata={"axes": "CYX", "Channel": {"Name": list(names)},
                  "PhysicalSizeX": mpp, "PhysicalSizeY": mpp},
    )
    return Path(path)


def big_tiff_pixels(
    stain: int, y0: int, x0: int, y1: int, x1: int, dtype: str = "uint16", tile: int = 512,
    noise: bool = False,
) -> np.ndarray:
    """What `write_big_ome_tiff` wrote over a window, computed independently of the file."""
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return (yy * 3 + xx + 1000 * stain + _noise(tile, noise)[yy % tile, xx % tile]).astype(dtype)


def write_tiff_folder(
    folder: Path, data: np.ndarray, names: Sequence[str], mpp: float | None = None
) -> Path:
    """One 2-D TIFF per stain named `<stain>.tif`; resolution tags (px/cm) when mpp is given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, plane in zip(names, data, strict=True):
        kwargs = {}
        if mpp is not None:
            kwargs = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
        tifffile.imwrite(folder / f"{name}.tif", plane, metadata=None, **kwargs)
    return folder


def write_multipage_tiff(
    path: Path, data: np.ndarray, names: Sequence[str] | None, how: str = "pagename",
    mpp: float | None = None,
) -> Path:
    """One page per stain, named by a PageName tag (`how="pagename"`) or ImageDescription."""
    with tifffile.TiffWriter(path) as tw:
        for index, plane in enumerate(data):
            kwargs: dict = {"metadata": None, "rowsperstrip": 64}
            if mpp is not None:
                kwargs.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
            if names is not None and how == "pagename":
                kwargs["extratags"] = [(285, "s", 0, names[index], True)]
            elif names is not None:
                kwargs["description"] = names[index]
            tw.write(plane, **kwargs)
    return Path(path)


def write_ome_zarr(
    path: Path,
    data: np.ndarray,
    names: Sequence[str] | None,
    mpp: float | None = 0.5,
    unit: str | None = "micrometer",
    zarr_format: int = 3,
    levels: int = 2,
    five_d: bool = False,
    chunk: int = 128,
) -> Path:
    """OME-NGFF 0.5 (Zarr v3, attributes under "ome") or 0.4 (Zarr v2) multiscale image."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    axis_names = ["t", "c", "z", "y", "x"] if five_d else ["c", "y", "x"]
    axes = []
    for name in axis_names:
        axis: dict = {"name": name, "type": {"t": "time", "c": "channel", "z": "space"}.get(
            name, "space")}
        if name in "yx" and unit:
            axis["unit"] = unit
        axes.append(axis)
    datasets, level = [], data
    for index in range(levels):
        array = level[None, :, None] if five_d else level
        z = group.create_array(str(index), shape=array.shape, dtype=array.dtype,
                               chunks=(*([1] * (array.ndim - 2)), chunk, chunk))
        z[...] = array
        factor = 2.0**index
        scale = [1.0] * (array.ndim - 2) + [(mpp or 1.0) * factor] * 2
        datasets.append({"path": str(index),
                         "coordinateTransformations": [{"type": "scale", "scale": scale}]})
        level = level[:, ::2, ::2]
    meta: dict = {"multiscales": [{"axes": axes, "datasets": datasets, "name": "slide"}]}
    if names is not None:
        meta["omero"] = {"channels": [{"label": n, "active": True} for n in names]}
    if zarr_format == 3:
        group.attrs["ome"] = {"version": "0.5", **meta}
    else:
        meta["multiscales"][0]["version"] = "0.4"
        group.attrs.update(meta)
    return Path(path)
