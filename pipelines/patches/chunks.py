"""Rows cut in tile order, written in aligned blocks of `chunk_rows`; memory capped by
writing open chunks partially when they would exceed a budget.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.errors import SlideInputError


class ChunkAssembler:
    """Collects rows cut in tile order and writes them in aligned blocks of `chunk_rows`.

    A chunk is written whole once all its rows arrived. When open chunks would exceed
    `max_bytes`, every open chunk writes the runs of rows it holds and frees its buffer; such
    chunks are later completed with row runs as well (never overwriting rows with zeros).
    """

    def __init__(
        self,
        n_rows: int,
        row_shape: tuple[int, ...],
        chunk_rows: int,
        write_block: Callable[[int, np.ndarray], None],
        max_bytes: int,
    ) -> None:
        self.n_rows, self.row_shape, self.chunk_rows = n_rows, row_shape, chunk_rows
        self._write = write_block
        self._max_bytes = max(max_bytes, chunk_rows * int(np.prod(row_shape)))
        self._buffers: dict[int, np.ndarray] = {}
        self._pending: dict[int, np.ndarray] = {}  # chunk -> bool mask of rows held, not written
        self._left = {}  # chunk -> rows not yet arrived
        self._spilled: set[int] = set()
        self._free: list[np.ndarray] = []
        self.done = np.zeros(n_rows, bool)
        self.peak_chunks = 0
        self.spills = 0
        self.blocks_written = 0

    def _size(self, chunk: int) -> int:
        return min(self.chunk_rows, self.n_rows - chunk * self.chunk_rows)

    def add(self, rows: np.ndarray, cut: Callable[[np.ndarray], np.ndarray]) -> None:
        """Take the patches of store rows `rows` (ascending); `cut(i)` returns those of rows[i].

        Patches are cut chunk by chunk straight into the chunk's buffer, so each patch is
        copied out of the tile once and the intermediate stays in cache.
        """
        rows = np.asarray(rows, np.int64)
        if np.any(np.diff(rows) <= 0):
            raise ValueError("Rows given to ChunkAssembler.add must be strictly ascending.")
        if self.done[rows].any():
            raise ValueError("A patch row was cut twice.")
        self.done[rows] = True
        chunks = rows // self.chunk_rows
        bounds = (np.flatnonzero(np.diff(chunks)) + 1).tolist()
        for a, b in zip([0, *bounds], [*bounds, len(rows)], strict=True):
            chunk = int(chunks[a])
            local = rows[a:b] - chunk * self.chunk_rows
            if chunk not in self._buffers:
                size = self._size(chunk)
                self._buffers[chunk] = self._new_buffer(size)
                self._pending[chunk] = np.zeros(size, bool)
                self._left.setdefault(chunk, size)
            if local[-1] - local[0] == b - a - 1:  # a run of rows: plain slice, no scatter
                self._buffers[chunk][local[0] : local[-1] + 1] = cut(np.arange(a, b))
            else:
                self._buffers[chunk][local] = cut(np.arange(a, b))
            self._pending[chunk][local] = True
            self._left[chunk] -= b - a
            if self._left[chunk] == 0:
                self._flush(chunk)
        self.peak_chunks = max(self.peak_chunks, len(self._buffers))
        if len(self._buffers) * self.chunk_rows * int(np.prod(self.row_shape)) > self._max_bytes:
            self.spills += 1
            for chunk in list(self._buffers):
                self._spilled.add(chunk)
                self._flush(chunk)

    def _new_buffer(self, size: int) -> np.ndarray:
        """A chunk buffer, reusing a written one when possible (no fresh pages per chunk)."""
        if size == self.chunk_rows and self._free:
            return self._free.pop()
        return np.empty((size, *self.row_shape), np.uint8)

    def _flush(self, chunk: int) -> None:
        buf, held = self._buffers.pop(chunk), self._pending.pop(chunk)
        start = chunk * self.chunk_rows
        if chunk not in self._spilled:
            self._write(start, buf)
            self.blocks_written += 1
        else:
            edges = np.flatnonzero(np.diff(np.concatenate(([0], held.view(np.int8), [0]))))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                self._write(start + int(a), buf[a:b])
                self.blocks_written += 1
        if len(buf) == self.chunk_rows and len(self._free) < 64:
            self._free.append(buf)

    def finish(self) -> None:
        if not self.done.all():
            missing = int((~self.done).sum())
            raise SlideInputError(
                f"{missing} patch rows were never cut; the tile plan missed them."
            )
        if self._buffers:  # pragma: no cover, every chunk flushes when its last row arrives
            raise AssertionError("Chunks left open after all rows arrived.")
