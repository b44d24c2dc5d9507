"""OME-Zarr reader: OME-NGFF 0.4 (Zarr v2) or 0.5 (Zarr v3) multiscale level 0, stain names
from `omero.channels[].label`, pixel size from the scale transforms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipelines.errors import SlideInputError
from pipelines.ingest.mpp import _plausible, _um_per_unit
from pipelines.ingest.source import SlideSource


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
