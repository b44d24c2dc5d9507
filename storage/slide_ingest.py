"""Write a slide into its store window by window, so memory holds one window at a time.

Reading the next windows overlaps with compressing the current one (a reader thread a few
windows ahead), which matters on slides whose decoding and encoding take similar time.

The store appears at its final path only when every window is written (storage.slide_store's
`create_slide` is atomic): a failing read leaves the previous store, if any, untouched, and no
temporary folder behind.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.atomic import remove_own_temporaries
from storage.errors import StorageError
from storage.fs import as_path, tree_bytes
from storage.slide_store import DEFAULT_CHUNK_PX, SlideInfo, create_slide, open_slide


@dataclass(frozen=True)
class WrittenSlide:
    """What one ingest wrote: the store, its size on disk and uncompressed, and the time taken."""

    path: Path
    bytes_on_disk: int
    bytes_raw: int
    windows: int
    seconds: float


def folder_bytes(path: Path) -> int:
    """Total size of the files under `path` (0 if absent)."""
    return tree_bytes(path)


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def prefetched(items: Iterable, depth: int = 2) -> Iterator:
    """Iterate `items` in a background thread, at most `depth` items ahead of the consumer.

    Exceptions raised while producing are re-raised to the consumer, in order; when the
    consumer stops early (or fails), the producer stops too and the thread is joined.
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:
            put(_Failed(exc))

    thread = threading.Thread(target=produce, name="slide-window-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def write_slide(
    final: Path,
    info: SlideInfo,
    windows: Iterable[tuple[int, int, int, np.ndarray]],
    source: dict[str, str] | None = None,
    chunk_px: int = DEFAULT_CHUNK_PX,
    read_ahead: int = 2,
) -> WrittenSlide:
    """Stream `(stain_index, y0, x0, block)` windows into a new slide store at `final`.

    Windows aligned to `chunk_px` write whole chunks, each once. Every pixel must be covered;
    a stain index or window outside the slide raises `StorageError`. `read_ahead` windows
    are read in a background thread while the current one is written (0: no thread).
    """
    final = as_path(final)
    remove_own_temporaries(final)
    started = time.perf_counter()
    count = 0
    with create_slide(final, info, source=source, chunk_px=chunk_px) as writer:
        for stain_index, y0, x0, block in prefetched(windows, read_ahead):
            h, w = block.shape
            if not (0 <= stain_index < len(info.stains)) or y0 < 0 or x0 < 0 \
                    or y0 + h > info.height_px or x0 + w > info.width_px:
                raise StorageError(
                    f"Slide {info.slide_id!r}: window stain {stain_index} at ({y0}, {x0}) of "
                    f"{h} x {w} px falls outside the {info.height_px} x {info.width_px} slide."
                )
            writer.write(y0, x0, block, stain_index=stain_index)
            count += 1
    raw = len(info.stains) * info.height_px * info.width_px * np.dtype(info.dtype).itemsize
    return WrittenSlide(final, folder_bytes(final), raw, count, time.perf_counter() - started)


def is_current(final: Path, info: SlideInfo, content_sha256: str) -> bool:
    """True when a finished store at `final` already holds this content with this layout."""
    final = as_path(final)
    if not final.exists():
        return False
    try:
        reader = open_slide(final)
    except (StorageError, KeyError, OSError, ValueError):
        return False
    return reader.info == info and reader.source.get("content_sha256") == content_sha256
