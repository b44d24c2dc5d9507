"""Write to a temporary sibling, then rename: readers see the old version or the new, never half.

A killed run leaves only `.<name>.tmp-*` siblings behind, which the next write of the same
path clears (`remove_own_temporaries`). A temporary's name says which process on which host
writes it (`.<name>.tmp-<host>-<pid>-<random>`), so only leftovers of writers that are gone are
removed: a second run writing the same output at the same moment is left alone. Leftovers
written on another host are removed once they are a day old. On object storage (an fsspec URL)
there is no rename: the temporary is a local file or folder that is uploaded when complete
(storage/fs.py `staged` describes how).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.fs import StoragePath, as_path, staged

_TMP_MARK = ".tmp-"
_OWNED = re.compile(r"^([0-9a-f]{8})-([0-9]+)-")
ELSEWHERE_STALE_S = 24 * 3600


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _owner() -> str:
    return f"{_host_tag()}-{os.getpid()}"



def _temporary_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}{_TMP_MARK}{_owner()}-{uuid.uuid4().hex[:12]}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(path: Path) -> bool:
    """A temporary whose writer is gone: its process on this host ended, it was written on
    another host more than a day ago, or its name predates owner tags."""
    owned = _OWNED.match(path.name.split(_TMP_MARK, 1)[1])
    if owned is None:
        return True
    host, pid = owned.group(1), int(owned.group(2))
    if host == _host_tag():
        return not _process_alive(pid)
    try:
        return time.time() - path.lstat().st_mtime > ELSEWHERE_STALE_S
    except FileNotFoundError:
        return False


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
        aside = final.with_name(f".{final.name}{_TMP_MARK}{_owner()}-old-{uuid.uuid4().hex[:8]}")
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


def remove_own_temporaries(final: str | os.PathLike[str]) -> int:
    """Delete leftovers of killed writes of `final` only (`.<name>.tmp-*`); returns how many.

    Writers of other paths in the same folder (other slides, other datasets) may be running
    right now: their temporaries are left alone, and so are those of a live writer of `final`.
    Object storage never holds temporaries (they are local), so there is nothing to clear.
    """
    final = as_path(final)
    if not isinstance(final, Path) or not final.parent.is_dir():
        return 0
    stale = [p for p in final.parent.glob(f".{glob.escape(final.name)}{_TMP_MARK}*")
             if _abandoned(p)]
    for path in stale:
        _remove(path)
    return len(stale)
