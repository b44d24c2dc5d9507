"""The nucleus patch store the classifier streams from.

Layout (plain Zarr v3, one group per slide so re-processing a slide rewrites only its group):

    patches.zarr/                 attrs: kind, patch_px, mpp, cell_types
      <slide_id>/                 attrs: slide_id, n_patches, class_ranges {index: [start, stop]}
        images       (n, patch_px, patch_px, 3) uint8, chunks of CHUNK_ROWS patches
        nucleus_id   (n,) int64
        class_index  (n,) int16, -1 for a nucleus without a label
        edge         (n,) bool, True where the patch was padded at the slide border

Rows are sorted by class index, then nucleus_id, so every class of a slide is one contiguous
run of rows and a class-balanced loader reads whole chunks of one class instead of decoding a
chunk per sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from storage.atomic import atomic_path, atomic_write_text, remove_own_temporaries
from storage.errors import StoreLayoutError
from storage.fs import as_path, glob, zarr_store
from storage.layout import validate_slide_id
from storage.zarr_io import FORMAT_VERSION, default_compressors

KIND = "patch_store"
CHUNK_ROWS = 128


def patch_order(class_index: np.ndarray, nucleus_id: np.ndarray) -> np.ndarray:
    """Row order of a slide's patches in the store: by class index, then nucleus_id."""
    return np.lexsort((np.asarray(nucleus_id), np.asarray(class_index)))


def _class_ranges(sorted_class_index: np.ndarray) -> dict[str, list[int]]:
    values, starts, counts = np.unique(sorted_class_index, return_index=True, return_counts=True)
    return {
        str(int(v)): [int(s), int(s + c)]
        for v, s, c in zip(values, starts, counts, strict=True)
    }


def ensure_store(path: Path, patch_px: int, mpp: float, cell_types: Sequence[str]) -> None:
    """Create the root group once; refuse a store made for another patch size or class list."""
    path = as_path(path)
    meta = path / "zarr.json"
    expected = {"patch_px": patch_px, "mpp": mpp, "cell_types": list(cell_types)}
    if meta.exists():
        attrs = dict(zarr.open_group(store=zarr_store(path, read_only=True), mode="r").attrs)
        found = {k: attrs.get(k) for k in expected}
        if attrs.get("kind") != KIND or found != expected:
            raise StoreLayoutError(
                f"{path} was written with {found}, not {expected}; choose another path or "
                "delete it to rebuild the patches."
            )
        return
    path.mkdir(parents=True, exist_ok=True)
    attrs = {"kind": KIND, "format_version": FORMAT_VERSION, **expected}
    document = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
    atomic_write_text(meta, json.dumps(document))


class SlidePatchWriter:
    def __init__(self, images: zarr.Array) -> None:
        self._images = images

    def write_block(self, start_row: int, images: np.ndarray) -> None:
        """Write consecutive rows; aligned blocks of CHUNK_ROWS encode each chunk once."""
        self._images[start_row : start_row + len(images)] = images


@contextmanager
def create_slide_patches(
    store: Path,
    slide_id: str,
    nucleus_id: np.ndarray,
    class_index: np.ndarray,
    edge: np.ndarray,
    patch_px: int,
    attrs: dict | None = None,
) -> Iterator[SlidePatchWriter]:
    """Write one slide's group; metadata must already be in `patch_order`.

    The group appears only when the block exits cleanly, replacing the slide's old patches.
    """
    store = as_path(store)
    validate_slide_id(slide_id)
    n = len(nucleus_id)
    order = patch_order(class_index, nucleus_id)
    if not np.array_equal(order, np.arange(n)):
        raise ValueError(f"Patches of slide {slide_id!r} are not in patch_order.")
    remove_own_temporaries(store / slide_id)  # other slides may be writing right now
    with atomic_path(store / slide_id) as tmp:
        group = zarr.open_group(store=str(tmp), mode="w", zarr_format=3)
        rows = max(1, min(CHUNK_ROWS, n))
        images = group.create_array(
            "images", shape=(n, patch_px, patch_px, 3), chunks=(rows, patch_px, patch_px, 3),
            dtype="uint8", compressors=default_compressors(1), fill_value=0,
        )
        for name, values, dtype in (
            ("nucleus_id", nucleus_id, "int64"),
            ("class_index", class_index, "int16"),
            ("edge", edge, "bool"),
        ):
            arr = group.create_array(
                name, shape=(n,), chunks=(max(1, min(n, 1 << 16)),), dtype=dtype,
                compressors=default_compressors(np.dtype(dtype).itemsize),
            )
            if n:
                arr[:] = np.asarray(values, dtype=dtype)
        group.attrs.update(
            {
                "slide_id": slide_id,
                "n_patches": n,
                "class_ranges": _class_ranges(np.asarray(class_index)),
                **(attrs or {}),
            }
        )
        yield SlidePatchWriter(images)


@dataclass(frozen=True)
class SlidePatches:
    """One slide's patches, opened lazily: metadata is small, images are read chunk by chunk."""

    slide_id: str
    images: zarr.Array
    nucleus_id: np.ndarray
    class_index: np.ndarray
    edge: np.ndarray
    class_ranges: dict[int, tuple[int, int]]

    @property
    def n_patches(self) -> int:
        return len(self.nucleus_id)

    @property
    def chunk_rows(self) -> int:
        return int(self.images.chunks[0])

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.images[start:stop])


class PatchStore:
    """Read side of the store: `PatchStore(path).slide(slide_id)`."""

    def __init__(self, path: Path) -> None:
        self.path = as_path(path)
        if not (self.path / "zarr.json").exists():
            raise StoreLayoutError(
                f"No patch store at {self.path}: materialise the nucleus_patches asset first."
            )
        self._root = zarr.open_group(store=zarr_store(self.path, read_only=True), mode="r")
        attrs = dict(self._root.attrs)
        if attrs.get("kind") != KIND:
            raise StoreLayoutError(f"{self.path} is not a patch store.")
        self.patch_px: int = int(attrs["patch_px"])
        self.mpp: float = float(attrs["mpp"])
        self.cell_types: tuple[str, ...] = tuple(attrs["cell_types"])

    def slide_ids(self) -> list[str]:
        if not isinstance(self.path, Path):  # one listing instead of two requests per slide
            return sorted(p.parent.name for p in glob(self.path, "*/zarr.json")
                          if not p.parent.name.startswith("."))
        return sorted(
            p.name for p in self.path.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "zarr.json").exists()
        )

    def slide(self, slide_id: str) -> SlidePatches:
        path = self.path / validate_slide_id(slide_id)
        if not (path / "zarr.json").exists():
            raise StoreLayoutError(f"The patch store {self.path} has no slide {slide_id!r}.")
        group = zarr.open_group(store=zarr_store(path, read_only=True), mode="r")
        ranges = {int(k): (int(v[0]), int(v[1])) for k, v in group.attrs["class_ranges"].items()}
        return SlidePatches(
            slide_id=slide_id,
            images=group["images"],
            nucleus_id=np.asarray(group["nucleus_id"][:]),
            class_index=np.asarray(group["class_index"][:]),
            edge=np.asarray(group["edge"][:]),
            class_ranges=ranges,
        )
