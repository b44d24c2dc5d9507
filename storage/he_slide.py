"""A real H&E slide on disk, in the virtual-H&E store layout (storage/vhe_store.py).

The store is `layout.he.vhe_zarr(slide_id)`: level 0 on the slide's own grid, level 1 at the
patch resolution (0.5 µm/px), RGB uint8, attrs `backend="real_he"`, the source file, its
pixel size and where that came from, and `content_sha256`. Patch extraction and inference read
it exactly as they read a rendered virtual H&E. Written atomically: a failed ingest leaves the
previous store (or none), never half of one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storage.errors import StorageError
from storage.fs import as_path
from storage.vhe_store import VirtualHELevel, VirtualHEReader, VirtualHEWriter, create_vhe, open_vhe

REAL_HE = "real_he"


@contextmanager
def create_he_slide(path: Path, slide_id: str, mpp: float, height_px: int, width_px: int,
                    level1: tuple[float, int, int] | None, chunk_px: int,
                    attrs: dict[str, Any]) -> Iterator[VirtualHEWriter]:
    """An H&E store of one or two levels (`level1` = (mpp, height, width)), published when the
    block exits cleanly; `writer.write(level, y0, x0, rgb)` fills it."""
    levels = [VirtualHELevel(mpp, height_px, width_px, chunk_px)]
    if level1 is not None:
        l1_mpp, l1_h, l1_w = level1
        levels.append(VirtualHELevel(l1_mpp, l1_h, l1_w, max(1, round(chunk_px * mpp / l1_mpp))))
    with create_vhe(path, slide_id, levels, REAL_HE, params=attrs) as writer:
        writer.update_attrs({"content_sha256": attrs.get("content_sha256", "")})
        yield writer


def he_store_current(path: Path, content_sha256: str, mpp: float, height_px: int,
                     width_px: int) -> bool:
    """True when a finished H&E store at `path` holds this content at this size and pixel size."""
    path = as_path(path)
    if not path.exists():
        return False
    try:
        store = open_vhe(path)
    except (StorageError, KeyError, OSError, ValueError):
        return False
    return (store.backend == REAL_HE and store.attrs.get("content_sha256") == content_sha256
            and store.shape(0) == (height_px, width_px) and abs(store.mpp - mpp) < 1e-9)


def open_he_slide(path: Path) -> VirtualHEReader:
    """The H&E store at `path`; a `StorageError` saying what to materialise when absent."""
    path = as_path(path)
    if not path.exists():
        raise StorageError(f"No H&E slide store at {path}: materialise he_slide_image first.")
    return open_vhe(path)

