"""Write to a temporary sibling, then rename: readers see the old version or the new, never half.

A killed run leaves only `.<name>.tmp-*` siblings behind, which the next write of the same
path clears (`remove_own_temporaries`); `remove_stale_temporaries` clears a whole folder, for a
folder that only one writer uses at a time.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    final = Path(final)
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


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `final` atomically (fsync before rename)."""
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(final)


def atomic_write_text(final: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(final, text.encode("utf-8"))


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> int:
    """Delete leftovers of killed writes directly inside `directory`; returns how many."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and _TMP_MARK in p.name]
    for path in stale:
        _remove(path)
    return len(stale)


def remove_own_temporaries(final: str | os.PathLike[str]) -> int:
    """Delete leftovers of killed writes of `final` only (`.<name>.tmp-*`); returns how many.

    Writers of other paths in the same folder (other slides, other datasets) may be running
    right now: their temporaries are left alone.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return 0
    stale = list(final.parent.glob(f".{glob.escape(final.name)}{_TMP_MARK}*"))
    for path in stale:
        _remove(path)
    return len(stale)
