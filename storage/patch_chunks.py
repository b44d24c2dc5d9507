"""Whole-chunk reads of a slide's patch images, fast enough to feed a GPU from one process.

Zarr's generic read path costs milliseconds of Python per chunk. For the patch store's own
layout (local files, `bytes` + Blosc codecs, one chunk spanning whole patches) a chunk file is a
single Blosc frame, decoded here straight into a NumPy buffer with the GIL released, so several
threads decode in parallel. Any other layout falls back to an ordinary Zarr slice read: the
result is identical either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec
from zarr.storage import LocalStore

from storage.patch_store import SlidePatches


class PatchChunkReader:
    """Reads chunk k of one slide's images: rows [k * chunk_rows, min(n, (k + 1) * chunk_rows))."""

    def __init__(self, slide: SlidePatches) -> None:
        self.slide = slide
        images = slide.images
        self.slide_id = slide.slide_id
        self.n_rows = int(images.shape[0])
        self.chunk_rows = int(images.chunks[0])
        self.patch_shape: tuple[int, ...] = tuple(int(s) for s in images.shape[1:])
        self.n_chunks = -(-self.n_rows // self.chunk_rows) if self.n_rows else 0
        self._chunk_dir = self._local_blosc_dir()
        self.chunks_read = 0

    def _local_blosc_dir(self) -> Path | None:
        images = self.slide.images
        meta = images.metadata
        store = images.store_path.store
        codecs = getattr(meta, "codecs", ())
        fast = (
            isinstance(store, LocalStore)
            and len(codecs) == 2
            and isinstance(codecs[0], BytesCodec)
            and isinstance(codecs[1], BloscCodec)
            and tuple(images.chunks[1:]) == self.patch_shape
            and images.dtype == np.uint8
        )
        return Path(store.root) / images.path if fast else None

    @property
    def class_ranges(self) -> dict[int, tuple[int, int]]:
        """{class_index: (start, stop)} rows of each class, as the store records them."""
        return self.slide.class_ranges

    @property
    def fast(self) -> bool:
        return self._chunk_dir is not None

    def chunk_bounds(self, k: int) -> tuple[int, int]:
        start = k * self.chunk_rows
        return start, min(self.n_rows, start + self.chunk_rows)

    def read_chunk(self, k: int) -> np.ndarray:
        """Decoded rows of chunk `k`, shape (rows, *patch_shape), uint8."""
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"Slide {self.slide_id!r} has {self.n_chunks} chunks, not {k}.")
        start, stop = self.chunk_bounds(k)
        self.chunks_read += 1
        if self._chunk_dir is None:
            return np.asarray(self.slide.images[start:stop])
        key = self.slide.images.metadata.encode_chunk_key((k,) + (0,) * len(self.patch_shape))
        path = self._chunk_dir / key
        out = np.empty((self.chunk_rows, *self.patch_shape), dtype=np.uint8)
        try:
            frame = path.read_bytes()
        except FileNotFoundError:  # an all-fill chunk is never written
            out.fill(int(self.slide.images.metadata.fill_value))
            return out[: stop - start]
        blosc.decompress(frame, out)
        return out[: stop - start]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Patches of arbitrary `rows` (any order), decoding each needed chunk once."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.patch_shape), dtype=np.uint8)
        if len(rows) == 0:
            return out
        chunk_of = rows // self.chunk_rows
        for k in np.unique(chunk_of):
            hit = np.flatnonzero(chunk_of == k)
            out[hit] = self.read_chunk(int(k))[rows[hit] - int(k) * self.chunk_rows]
        return out
