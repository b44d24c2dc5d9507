"""Slide files waiting to be ingested: what sits in an inbox folder, and a content hash per slide.

A slide in the inbox is one top-level entry: an (OME-)TIFF file, an OME-Zarr folder, or a folder
of single-stain TIFFs. Hidden entries and partial downloads (`.part`, `.tmp`, `.crdownload`) are
skipped, and so is an entry still being written (modified less than `settle_seconds` ago).

The content hash (`content_sha256`) is the SHA-256 of the file's bytes, streamed. For a folder it
covers every visible file in sorted relative-path order, each as its relative path, its size and
its bytes, so renaming a stain file changes the hash while touching a file does not.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storage.fs import as_path

INBOX_MANIFEST = "manifest.csv"
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
# Longest first, so `a.ome.tif` gives slide id `a`, not `a.ome`.
_SLIDE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".zarr", *TIFF_SUFFIXES)
_PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart")
_HASH_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Fingerprint:
    """A cheap summary of a slide's files (sizes, newest mtime); equal ones need no rehash."""

    size_bytes: int
    mtime_ns: int
    n_files: int


def _visible(path: Path) -> bool:
    name = path.name
    return not (name.startswith((".", "~")) or name.lower().endswith(_PARTIAL_SUFFIXES))


def slide_files(path: Path) -> Iterator[Path]:
    """The files that make up a slide: the file itself, or a folder's visible files, sorted."""
    path = as_path(path)
    if path.is_file():
        yield path
        return
    if not isinstance(path, Path):  # object storage: one listing
        base = path.path.rstrip("/")
        for name in sorted(path.fs.find(base)):
            relative = name[len(base) + 1 :]
            if all(_visible(Path(part)) for part in relative.split("/")):
                yield path / relative
        return
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if _visible(Path(d)))
        for name in sorted(filenames):
            if _visible(Path(name)):
                yield Path(dirpath) / name


def is_zarr_folder(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup")
    )


def _is_slide_entry(path: Path) -> bool:
    if not _visible(path):
        return False
    if path.is_file():
        return path.name.lower().endswith(TIFF_SUFFIXES)
    if path.is_dir():
        if is_zarr_folder(path):
            return True
        return any(
            p.is_file() and _visible(p) and p.name.lower().endswith(TIFF_SUFFIXES)
            for p in path.iterdir()
        )
    return False


def slide_id_for(path: Path) -> str:
    """The slide id an inbox entry gets when no manifest names it: its name without suffix."""
    name = Path(path).name
    for suffix in _SLIDE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def fingerprint(path: Path) -> Fingerprint:
    """Total size, newest modification time and file count of a slide's files."""
    size = newest = count = 0
    for file in slide_files(path):
        stat = file.stat()
        size += stat.st_size
        newest = max(newest, stat.st_mtime_ns)
        count += 1
    return Fingerprint(size, newest, count)


def discover_inbox(
    inbox_dir: Path, settle_seconds: float = 0.0, now: float | None = None
) -> list[Path]:
    """Slide entries directly inside `inbox_dir`, sorted; [] when the folder does not exist.

    Entries modified within the last `settle_seconds` are left for a later look, so a slide
    being copied in is not ingested half-way.
    """
    inbox_dir = as_path(inbox_dir)
    if not inbox_dir.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for entry in sorted(inbox_dir.iterdir(), key=lambda p: p.name):
        if entry.name == INBOX_MANIFEST or not _is_slide_entry(entry):
            continue
        if settle_seconds > 0 and now - fingerprint(entry).mtime_ns / 1e9 < settle_seconds:
            continue
        found.append(entry)
    return found


def content_sha256(path: Path) -> str:
    """SHA-256 (hex) of a slide's content, streamed in 8 MiB blocks; see the module docstring."""
    path = as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"No slide at {path}: fix the path in the manifest.")
    digest = hashlib.sha256()
    if path.is_file():
        _update_with_file(digest, path)
        return digest.hexdigest()
    for file in slide_files(path):
        name = file.relative_to(path).as_posix() if isinstance(path, Path) \
            else str(file)[len(str(path).rstrip("/")) + 1 :]
        relative = name.encode("utf-8")
        digest.update(len(relative).to_bytes(4, "little") + relative)
        digest.update(file.stat().st_size.to_bytes(8, "little"))
        _update_with_file(digest, file)
    return digest.hexdigest()


def _update_with_file(digest: hashlib._Hash, file: Path) -> None:
    with file.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)


def changed_slides(
    slides: dict[str, Path], seen: dict[str, dict]
) -> tuple[list[str], dict[str, dict]]:
    """Slide ids whose content is new or different from `seen`, and the record to keep.

    `seen` maps slide_id -> {"path", "content_sha256", "size_bytes", "mtime_ns", "n_files"}.
    A slide whose path and fingerprint are unchanged is not re-read; one whose fingerprint
    changed is rehashed, and counts as changed only if its hash differs (a touched file does
    not). Slides gone from `slides` drop out of the record.
    """
    changed: list[str] = []
    record: dict[str, dict] = {}
    for slide_id, path in sorted(slides.items()):
        fp = fingerprint(path)
        old = seen.get(slide_id)
        now = {"path": str(path), "size_bytes": fp.size_bytes, "mtime_ns": fp.mtime_ns,
               "n_files": fp.n_files}
        if old and all(old.get(k) == v for k, v in now.items()) and old.get("content_sha256"):
            record[slide_id] = old
            continue
        digest = content_sha256(path)
        record[slide_id] = {**now, "content_sha256": digest}
        if not old or old.get("content_sha256") != digest:
            changed.append(slide_id)
    return changed, record
