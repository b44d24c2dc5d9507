"""Write to a temporary sibling, then rename: readers see the old version or the new, never half.

A killed run leaves only `.<name>.tmp-*` siblings behind, which `remove_stale_temporaries`
clears on the next run. On object storage (an fsspec URL) there is no rename: the temporary is
a local file or folder that is uploaded when complete (storage/fs.py `staged` describes how).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.fs import StoragePath, as_path, staged

_TMP_MARK = ".tmp-"


def _temporary_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}{_TMP_MARK}{uuid.uuid4().hex[:12]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def publish(tmp: Path, final: Path) -> None:
    """Move a finished temporary file or directory onto `final`, replacing what was there.

    A file is swapped in one `os.replace`. A directory cannot replace a non-empty directory in
    one step, so the old one is first renamed aside; a reader at that instant sees no store
    (and retries), never a mixture of old and new chunks.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if tmp.is_dir() and final.exists():
        aside = final.with_name(f".{final.name}{_TMP_MARK}old-{uuid.uuid4().hex[:8]}")
        os.replace(final, aside)
        os.replace(tmp, final)
        _remove(aside)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it becomes `final`, on error it vanishes."""
    final = as_path(final)
    if not isinstance(final, Path):
        with staged(final) as tmp:
            yield tmp
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(final)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if not tmp.exists():
        raise FileNotFoundError(f"Nothing was written to {tmp} for {final}.")
    publish(tmp, final)


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes) -> StoragePath:
    """Write `data` to `final` atomically (fsync before rename)."""
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return as_path(final)


def atomic_write_text(final: str | os.PathLike[str], text: str) -> StoragePath:
    return atomic_write_bytes(final, text.encode("utf-8"))


def remove_stale_temporaries(final: str | os.PathLike[str]) -> int:
    """Delete leftovers of killed writes of `final` (its `.<name>.tmp-*` siblings only).

    Only this path's own leftovers go: another process may be writing a sibling right now.
    Object storage never holds temporaries (they are local), so there is nothing to clear.
    """
    final = as_path(final)
    if not isinstance(final, Path) or not final.parent.is_dir():
        return 0
    stale = list(final.parent.glob(f".{final.name}{_TMP_MARK}*"))
    for path in stale:
        _remove(path)
    return len(stale)
