"""A catalog held open for writing by another process is not replaced under it."""

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from storage.catalog import CatalogSpec, build_catalog
from storage.errors import CatalogBusyError

V1 = CatalogSpec(sources=(), scripts=("CREATE VIEW v AS SELECT 1 AS x",))
V2 = CatalogSpec(sources=(), scripts=("CREATE VIEW v AS SELECT 2 AS x",))


def _hold(path: Path, read_only: bool, write: bool) -> subprocess.Popen:
    """Another process with the catalog open (as the duckdb shell would be), until killed."""
    code = (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(path)!r}, read_only={read_only})\n"
        + ("con.execute('CREATE TABLE notes AS SELECT 1 AS n')\n" if write else "")
        + "print('ready', flush=True)\ntime.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


def _read(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.sql("SELECT x FROM v").fetchall()[0][0]


@pytest.mark.parametrize("write", [False, True])
def test_rebuild_refuses_while_a_writer_holds_the_catalog_and_readers_keep_working(
    tmp_path: Path, write: bool
) -> None:
    target = tmp_path / "catalog.duckdb"
    build_catalog(target, V1)
    holder = _hold(target, read_only=False, write=write)
    try:
        with pytest.raises(CatalogBusyError) as caught:
            build_catalog(target, V2)
        assert str(target) in str(caught.value)
        assert "-readonly" in str(caught.value) or ".wal" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    assert _read(target) == 1  # the old catalog, still readable
    # The writer gone (its write-ahead log, if any, is replayed by the next writer), it rebuilds.
    (target.with_name(target.name + ".wal")).unlink(missing_ok=True)
    build_catalog(target, V2)
    assert _read(target) == 2


def test_a_wal_left_beside_the_catalog_is_named(tmp_path: Path) -> None:
    target = tmp_path / "catalog.duckdb"
    build_catalog(target, V1)
    wal = target.with_name(target.name + ".wal")
    wal.write_bytes(b"left by a crashed writer")
    with pytest.raises(CatalogBusyError, match=r"delete .*catalog\.duckdb\.wal"):
        build_catalog(target, V2)


def test_read_only_holders_do_not_block_a_rebuild(tmp_path: Path) -> None:
    target = tmp_path / "catalog.duckdb"
    build_catalog(target, V1)
    holder = _hold(target, read_only=True, write=False)
    try:
        started = time.perf_counter()
        build_catalog(target, V2)
        assert time.perf_counter() - started < 10
    finally:
        holder.kill()
        holder.wait()
    assert _read(target) == 2
