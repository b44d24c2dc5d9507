"""Class-balanced batches streamed from the patch store, whole chunks at a time.

Every example of every batch first draws a class uniformly among the classes present, then a
patch of that class (§2.4). Decoding a 128-row chunk per sample would be ~100x too slow, so
patches are served from per-class reservoirs:

- A *generation* holds up to `reservoir_rows` patches of every class (all of them for a class
  that has fewer), gathered by decoding whole chunks: segments (a chunk's rows of one class)
  are picked at random, weighted by their size, until the class's reservoir is full.
- Batch `t` samples from generation `t // steps_per_generation`; a generation lasts long enough
  that each reservoir patch is drawn about `reuse` times on average.
- While one generation serves batches, a background thread decodes the next one (Blosc decodes
  release the GIL, so `threads` decoders run in parallel).

Which chunks a generation holds and which patches a batch draws depend only on (seed,
generation) and (seed, step), never on thread timing: a run resumed at step t sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipelines.errors import ConfigurationError


class ChunkSource(Protocol):
    """One slide's patches as storage/patch_chunks.PatchChunkReader exposes them."""

    slide_id: str
    n_rows: int
    chunk_rows: int
    n_chunks: int
    patch_shape: tuple[int, ...]

    @property
    def class_ranges(self) -> dict[int, tuple[int, int]]: ...

    def read_chunk(self, k: int) -> np.ndarray: ...


@dataclass(frozen=True)
class LoaderParams:
    """`reservoir_rows` patches per class per generation; `reuse` draws per reservoir patch."""

    batch_size: int = 256
    reservoir_rows: int = 4096
    reuse: float = 2.0
    augment: bool = False
    seed: int = 0
    threads: int = 2


@dataclass(frozen=True)
class Batch:
    """`images` (B, px, px, 3) uint8 as stored; `labels` class indices; where each came from."""

    step: int
    images: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    row: np.ndarray


@dataclass
class LoaderStats:
    generations: int = 0
    chunks_decoded: int = 0
    fill_s: float = 0.0
    wait_s: float = 0.0
    batches: int = 0


@dataclass
class _ClassIndex:
    """Segments of one class: (source, chunk, first row, stop row) each, and their total."""

    label: int
    source: np.ndarray
    chunk: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    total: int = field(init=False)

    def __post_init__(self) -> None:
        self.total = int((self.hi - self.lo).sum())


@dataclass
class _Generation:
    images: np.ndarray  # (n_present, capacity, *patch_shape)
    count: np.ndarray  # (n_present,)
    source: np.ndarray  # (n_present, capacity)
    row: np.ndarray  # (n_present, capacity)
    index: int = -1
    static_done: bool = False


def _class_segments(sources: Sequence[ChunkSource], label: int) -> _ClassIndex:
    parts: list[tuple[int, int, int, int]] = []
    for s, src in enumerate(sources):
        span = src.class_ranges.get(label)
        if span is None or span[1] <= span[0]:
            continue
        start, stop = span
        for k in range(start // src.chunk_rows, (stop - 1) // src.chunk_rows + 1):
            lo = max(start, k * src.chunk_rows)
            hi = min(stop, (k + 1) * src.chunk_rows)
            parts.append((s, k, lo, hi))
    arr = np.array(parts, dtype=np.int64).reshape(-1, 4)
    return _ClassIndex(label, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])


def dihedral(images: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Apply one of the 8 flips/rotations by 90° to each square patch (k in 0..7)."""
    out = images.copy()
    for j in range(8):
        sel = np.flatnonzero(k == j)
        if len(sel) == 0 or j == 0:
            continue
        x = np.rot90(images[sel], j % 4, axes=(1, 2))
        out[sel] = x[:, :, ::-1] if j >= 4 else x
    return out


class BalancedPatchLoader:
    """Infinite class-balanced batches over `sources` (one per training slide).

    Use as a context manager (it owns decoder threads); `batches(start_step)` yields
    `Batch`es for steps start_step, start_step + 1, ...
    """

    def __init__(
        self, sources: Sequence[ChunkSource], n_classes: int, params: LoaderParams
    ) -> None:
        if params.batch_size < 1 or params.reservoir_rows < 1 or params.reuse <= 0:
            raise ConfigurationError(f"Loader parameters {params} must be positive.")
        if not sources:
            raise ConfigurationError("No training slides with patches: nothing to load.")
        shapes = {tuple(s.patch_shape) for s in sources}
        if len(shapes) != 1:
            raise ConfigurationError(f"Slides have different patch shapes {sorted(shapes)}.")
        self.sources = list(sources)
        self.params = params
        self.n_classes = n_classes
        self.patch_shape: tuple[int, ...] = shapes.pop()
        classes = [_class_segments(self.sources, c) for c in range(n_classes)]
        self.classes = [c for c in classes if c.total > 0]
        if not self.classes:
            raise ConfigurationError(
                f"The slides {[s.slide_id for s in self.sources][:5]} hold no labelled patches."
            )
        self.present = np.array([c.label for c in self.classes], dtype=np.int64)
        self.class_counts = {c.label: c.total for c in self.classes}
        chunk_rows = max(s.chunk_rows for s in self.sources)
        self.capacity = min(
            max(c.total for c in self.classes), params.reservoir_rows + chunk_rows
        )
        per_generation = len(self.classes) * params.reservoir_rows * params.reuse
        self.steps_per_generation = max(1, round(per_generation / params.batch_size))
        self.stats = LoaderStats()
        self._buffers = [self._new_buffer(), self._new_buffer()]
        self._decoders = ThreadPoolExecutor(max(1, params.threads), "patch-decode")
        self._filler = ThreadPoolExecutor(1, "patch-fill")
        self._lock = threading.Lock()

    # -- context management -------------------------------------------------------------------
    def __enter__(self) -> BalancedPatchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._filler.shutdown(wait=True, cancel_futures=True)
        self._decoders.shutdown(wait=True, cancel_futures=True)

    # -- generations --------------------------------------------------------------------------
    def _new_buffer(self) -> _Generation:
        n = len(self.classes)
        return _Generation(
            images=np.zeros((n, self.capacity, *self.patch_shape), dtype=np.uint8),
            count=np.zeros(n, dtype=np.int64),
            source=np.zeros((n, self.capacity), dtype=np.int32),
            row=np.zeros((n, self.capacity), dtype=np.int64),
        )

    def _is_static(self, cls: _ClassIndex) -> bool:
        return cls.total <= self.capacity

    def _pick_segments(self, generation: int, pos: int, cls: _ClassIndex) -> np.ndarray:
        """Segments of a class in one generation: all of them for a small class, else a
        size-weighted random draw without replacement until `reservoir_rows` rows."""
        if self._is_static(cls):
            return np.arange(len(cls.lo))
        rng = np.random.default_rng([self.params.seed, 7, generation, cls.label])
        sizes = (cls.hi - cls.lo).astype(np.float64)
        keys = np.log(rng.random(len(sizes))) / sizes  # Efraimidis-Spirakis weighted order
        order = np.argsort(-keys, kind="stable")
        filled = np.cumsum(sizes[order])
        n_take = int(np.searchsorted(filled, self.params.reservoir_rows)) + 1
        return order[: min(n_take, len(order))]

    def _fill(self, generation: int, buf: _Generation) -> _Generation:
        t0 = time.perf_counter()
        wanted: list[tuple[int, _ClassIndex, np.ndarray]] = []
        for pos, cls in enumerate(self.classes):
            if buf.static_done and self._is_static(cls):
                continue
            wanted.append((pos, cls, self._pick_segments(generation, pos, cls)))
        keys = sorted(
            {(int(c.source[i]), int(c.chunk[i])) for _, c, seg in wanted for i in seg}
        )
        decoded = dict(
            zip(
                keys,
                self._decoders.map(lambda key: self.sources[key[0]].read_chunk(key[1]), keys),
                strict=True,
            )
        )
        for pos, cls, seg in wanted:
            n = 0
            for i in seg:
                s, k, lo, hi = (int(cls.source[i]), int(cls.chunk[i]), int(cls.lo[i]),
                                int(cls.hi[i]))
                take = min(hi - lo, self.capacity - n)
                base = k * self.sources[s].chunk_rows
                buf.images[pos, n : n + take] = decoded[(s, k)][lo - base : lo - base + take]
                buf.source[pos, n : n + take] = s
                buf.row[pos, n : n + take] = np.arange(lo, lo + take)
                n += take
                if n == self.capacity:
                    break
            buf.count[pos] = n
        buf.index = generation
        buf.static_done = True
        with self._lock:
            self.stats.generations += 1
            self.stats.chunks_decoded += len(keys)
            self.stats.fill_s += time.perf_counter() - t0
        return buf

    # -- batches ------------------------------------------------------------------------------
    def sample(self, step: int, gen: _Generation) -> Batch:
        """Batch `step` drawn from generation `gen` (which must be step // steps_per_generation)."""
        rng = np.random.default_rng([self.params.seed, 11, step])
        b = self.params.batch_size
        pos = rng.integers(0, len(self.classes), b)
        idx = (rng.random(b) * gen.count[pos]).astype(np.int64)
        images = gen.images[pos, idx]
        if self.params.augment:
            images = dihedral(images, rng.integers(0, 8, b))
        return Batch(
            step=step,
            images=images,
            labels=self.present[pos],
            source=gen.source[pos, idx],
            row=gen.row[pos, idx],
        )

    def batches(self, start_step: int = 0) -> Iterator[Batch]:
        """Batches for steps start_step, start_step + 1, ... (infinite)."""
        spg = self.steps_per_generation
        g = start_step // spg
        pending: Future[_Generation] = self._filler.submit(self._fill, g, self._buffers[0])
        step = start_step
        while True:
            t0 = time.perf_counter()
            current = pending.result()
            self.stats.wait_s += time.perf_counter() - t0
            spare = self._buffers[1] if current is self._buffers[0] else self._buffers[0]
            pending = self._filler.submit(self._fill, g + 1, spare)
            while step < (g + 1) * spg:
                self.stats.batches += 1
                yield self.sample(step, current)
                step += 1
            g += 1


def balanced_rows(
    sources: Sequence[ChunkSource], n_classes: int, per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed, seeded subset of up to `per_class` patches of each class: (source, row, label),
    sorted by source and row. Used for a class-balanced validation loss."""
    out_s, out_r, out_l = [], [], []
    rng = np.random.default_rng([seed, 13])
    for label in range(n_classes):
        s_list, r_list = [], []
        for s, src in enumerate(sources):
            span = src.class_ranges.get(label)
            if span and span[1] > span[0]:
                s_list.append(np.full(span[1] - span[0], s))
                r_list.append(np.arange(span[0], span[1]))
        if not s_list:
            continue
        s_all, r_all = np.concatenate(s_list), np.concatenate(r_list)
        pick = rng.permutation(len(r_all))[:per_class]
        out_s.append(s_all[pick])
        out_r.append(r_all[pick])
        out_l.append(np.full(len(pick), label))
    if not out_s:
        return (np.zeros(0, np.int64),) * 3
    s, r, lab = (np.concatenate(x).astype(np.int64) for x in (out_s, out_r, out_l))
    order = np.lexsort((r, s))
    return s[order], r[order], lab[order]


def read_rows(
    sources: Sequence[ChunkSource], source: np.ndarray, row: np.ndarray
) -> np.ndarray:
    """Patches at (source, row) pairs, each needed chunk decoded once."""
    shape = tuple(sources[0].patch_shape) if sources else (0,)
    out = np.empty((len(row), *shape), dtype=np.uint8)
    for s in np.unique(source):
        src = sources[int(s)]
        hit = np.flatnonzero(source == s)
        chunk_of = row[hit] // src.chunk_rows
        for k in np.unique(chunk_of):
            sel = hit[chunk_of == k]
            out[sel] = src.read_chunk(int(k))[row[sel] - int(k) * src.chunk_rows]
    return out
