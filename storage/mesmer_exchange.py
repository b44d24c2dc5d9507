"""The files the Mesmer worker and the main environment exchange.

The Mesmer worker runs in a Python 3.10 environment whose zarr (2.x) cannot read the project's
zarr v3 stores (zarr 3 needs Python >= 3.11), so the exchange uses zarr v2, which both sides
read and write:

- `inputs.zarr`: the stains Mesmer reads (nuclear first, then membrane), copied from the slide
  store window by window into one array `image` (stain, y, x), same dtype, Blosc-zstd chunks;
- `labels.zarr`: the worker's stitched nucleus labels, array `labels` int32 (y, x), which is
  then streamed into the project's mask store (storage/mask_store.py).

Both live in a private folder under the data root that is removed afterwards, so a worker in a
cluster pod sees them through the same shared volume as the data.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numcodecs
import numpy as np
import zarr

from storage.errors import StoreLayoutError
from storage.fs import is_remote
from storage.mask_store import create_mask
from storage.slide_store import SlideReader
from storage.tiles import tile_grid

INPUTS = "inputs.zarr"
LABELS = "labels.zarr"


@contextmanager
def exchange_folder(root: Path, slide_id: str) -> Iterator[Path]:
    """A fresh folder under `<root>/tmp/` for one slide's exchange, removed on exit.

    With the data root on object storage the folder is local (the system's temporary folder):
    the worker must then run where it can see that folder.
    """
    parent = Path(tempfile.gettempdir()) if is_remote(root) else Path(root) / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"mesmer-{slide_id}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_inputs(reader: SlideReader, stains: Sequence[str], path: Path, chunk_px: int) -> Path:
    """Copy `stains` of a slide into a zarr v2 array `image` (stain, y, x), chunk by chunk."""
    info = reader.info
    group = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    image = group.create_array(
        "image",
        shape=(len(stains), info.height_px, info.width_px),
        chunks=(1, min(chunk_px, info.height_px), min(chunk_px, info.width_px)),
        dtype=info.dtype,
        compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE),
        fill_value=0,
    )
    group.attrs.update({"slide_id": info.slide_id, "stains": list(stains), "mpp": info.mpp})
    for tile in tile_grid(info.height_px, info.width_px, chunk_px):
        block = reader.read(tile.y0, tile.x0, tile.y1, tile.x1, stains)
        image[:, tile.y0 : tile.y1, tile.x0 : tile.x1] = block
    return Path(path)


def publish_labels(
    labels_path: Path, mask_path: Path, slide_id: str, attrs: dict, chunk_px: int = 1024
) -> dict:
    """Stream the worker's zarr v2 `labels` into the slide's mask store (published atomically).

    Returns the attributes the worker stored beside the labels.
    """
    try:
        group = zarr.open_group(store=str(labels_path), mode="r", zarr_format=2)
        labels = group["labels"]
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreLayoutError(
            f"The Mesmer worker left no labels at {labels_path} for slide {slide_id!r}; "
            "see the run's logs for the worker's error."
        ) from exc
    if labels.dtype != np.int32 or labels.ndim != 2:
        raise StoreLayoutError(f"{labels_path}: expected int32 (y, x) labels, got {labels.dtype}.")
    height, width = (int(s) for s in labels.shape)
    with create_mask(mask_path, slide_id, height, width, attrs=attrs, chunk_px=chunk_px) as mask:
        for tile in tile_grid(height, width, chunk_px):
            mask.write(tile.y0, tile.x0, np.asarray(labels[tile.y0 : tile.y1, tile.x0 : tile.x1]))
    return dict(group.attrs)
