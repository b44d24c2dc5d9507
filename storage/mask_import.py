"""Nucleus masks made elsewhere (MCMICRO, ark, QuPath, Mesmer): TIFF, OME-TIFF or Zarr.

`open_imported_mask(path)` gives a window reader over the full-resolution label plane without
loading the file: tiled TIFFs and Zarr arrays are read chunk by chunk. Leading axes of length
one are dropped; a file with several label planes (e.g. whole-cell and nuclear) needs `plane`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import zarr

from storage.errors import StorageError


class MaskImportError(StorageError):
    """An imported mask file cannot be opened or has no single 2-D label plane."""


class ImportedMask:
    """A read-only (y, x) label plane of an imported mask file; `name` is the backend name."""

    name = "import"

    def __init__(self, path: Path, array, axes: str, plane: int | None) -> None:
        self.path = Path(path)
        self._array = array
        shape = tuple(int(s) for s in array.shape)
        extra = [i for i, n in enumerate(shape[:-2]) if n > 1]
        if len(extra) > 1 or (extra and plane is None):
            raise MaskImportError(
                f"{self.path}: the mask has shape {shape} (axes {axes or '?'}), more than one "
                "label plane; choose one with the mask plane setting (e.g. 0 or 1)."
            )
        index: list[int] = [0] * (len(shape) - 2)
        if extra:
            if not 0 <= plane < shape[extra[0]]:
                raise MaskImportError(
                    f"{self.path}: plane {plane} does not exist; the mask has {shape[extra[0]]}."
                )
            index[extra[0]] = plane
        self._index = tuple(index)
        self.shape: tuple[int, int] = (shape[-2], shape[-1])
        self.dtype = np.dtype(array.dtype)
        self.description = f"{self.path.name} ({axes or 'array'} {shape}, {self.dtype})"

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        return np.asarray(self._array[(*self._index, slice(y0, y1), slice(x0, x1))])


def open_imported_mask(path: str | Path, plane: int | None = None) -> ImportedMask:
    """Open a label mask from a TIFF/OME-TIFF file or a Zarr array/group (OME-Zarr: level 0)."""
    path = Path(path)
    if not path.exists():
        raise MaskImportError(
            f"No mask at {path}: put the slide's mask there or change the import path pattern."
        )
    name = path.name.lower()
    if path.is_dir() or name.endswith(".zarr"):
        array, axes = _open_zarr(path)
    elif name.endswith((".tif", ".tiff", ".btf", ".tf8")):
        array, axes = _open_tiff(path)
    else:
        raise MaskImportError(f"{path}: masks are read from .tif/.tiff/.ome.tif files or .zarr.")
    return ImportedMask(path, array, axes, plane)


def _open_tiff(path: Path):
    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
        store = series.aszarr(level=0)
        array = zarr.open(store, mode="r")
    except Exception as exc:
        raise MaskImportError(f"{path}: cannot read the TIFF ({exc}); is it complete?") from exc
    if isinstance(array, zarr.Group):  # pyramidal: level 0 is the first array
        array = array[sorted(array.array_keys())[0]]
    return array, series.axes


def _open_zarr(path: Path):
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise MaskImportError(f"{path}: cannot open as Zarr ({exc}).") from exc
    if isinstance(node, zarr.Array):
        return node, ""
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if multiscales:
        level0 = multiscales[0]["datasets"][0]["path"]
        axes = "".join(a["name"] if isinstance(a, dict) else a
                       for a in multiscales[0].get("axes", []))
        return node[level0], axes.upper()
    arrays = sorted(node.array_keys())
    if "labels" in arrays:
        return node["labels"], "YX"
    if len(arrays) == 1:
        return node[arrays[0]], ""
    if "labels" in node.group_keys():
        names = dict(node["labels"].attrs).get("labels") or sorted(node["labels"].group_keys())
        if names:
            return _open_zarr(path / "labels" / names[0])
    raise MaskImportError(
        f"{path}: a Zarr group without a single label array; point the import path at the array."
    )
