"""Writers of different slides (or different artifacts) sharing a folder leave each other's
in-flight temporaries alone; a re-run clears only its own leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from storage.atomic import (
    ELSEWHERE_STALE_S,
    _host_tag,
    _temporary_sibling,
    remove_own_temporaries,
)
from storage.catalog import CatalogSpec, ParquetSource, build_catalog, query_catalog
from storage.layout import DataLayout
from storage.mask_store import create_mask, open_mask
from storage.patch_store import PatchStore, create_slide_patches, ensure_store

CELL_TYPES = ("a", "b")


def _patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, 5, 5, 3), dtype=np.uint8)
    return images, np.arange(1, n + 1, dtype=np.int64), np.zeros(n, dtype=np.int16)


def _write_all(store, slide_id: str, images, ids, classes) -> None:
    with create_slide_patches(store, slide_id, ids, classes, np.zeros(len(ids), bool), 5) as w:
        w.write_block(0, images)


def test_remove_own_temporaries_spares_other_paths(tmp_path) -> None:
    for name in (".S1.tmp-aaa", ".S1.tmp-old-bbb", ".S10.tmp-ccc", ".S2.tmp-ddd", "S1"):
        (tmp_path / name).mkdir()
    assert remove_own_temporaries(tmp_path / "S1") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".S10.tmp-ccc", ".S2.tmp-ddd", "S1"]
    assert remove_own_temporaries(tmp_path / "missing" / "S1") == 0


def test_patches_of_one_slide_do_not_break_another_slide_being_written(tmp_path) -> None:
    store = tmp_path / "patches.zarr"
    ensure_store(store, 5, 0.5, CELL_TYPES)
    a_images, a_ids, a_classes = _patches(300, seed=1)
    b_images, b_ids, b_classes = _patches(40, seed=2)
    with create_slide_patches(store, "A", a_ids, a_classes, np.zeros(300, bool), 5) as writer:
        writer.write_block(0, a_images[:128])
        _write_all(store, "B", b_images, b_ids, b_classes)  # B starts and ends meanwhile
        writer.write_block(128, a_images[128:])
    reader = PatchStore(store)
    assert reader.slide_ids() == ["A", "B"]
    np.testing.assert_array_equal(reader.slide("A").read_rows(0, 300), a_images)
    np.testing.assert_array_equal(reader.slide("A").nucleus_id, a_ids)
    np.testing.assert_array_equal(reader.slide("B").read_rows(0, 40), b_images)


def test_rewriting_a_slide_clears_its_own_leftovers_only(tmp_path) -> None:
    store = tmp_path / "patches.zarr"
    ensure_store(store, 5, 0.5, CELL_TYPES)
    (store / ".A.tmp-killed").mkdir()  # a killed earlier write of A
    (store / ".B.tmp-running").mkdir()  # B being written by another process right now
    _write_all(store, "A", *_patches(3, seed=3))
    assert not (store / ".A.tmp-killed").exists()
    assert (store / ".B.tmp-running").exists()


def test_catalog_build_spares_other_writers_in_the_data_root(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    pl.DataFrame({"x": [1, 2]}).write_parquet(tmp_path / "t.parquet")
    (tmp_path / ".manifest.parquet.tmp-0123").write_bytes(b"half a manifest")  # being written
    (tmp_path / ".catalog.duckdb.tmp-killed").write_bytes(b"half a catalog")  # killed build
    spec = CatalogSpec((ParquetSource("t", str(tmp_path / "t.parquet")),))
    build_catalog(layout.catalog_db, spec)
    assert (tmp_path / ".manifest.parquet.tmp-0123").exists()
    assert not (tmp_path / ".catalog.duckdb.tmp-killed").exists()
    assert query_catalog(layout.catalog_db, "SELECT sum(x) AS s FROM t")["s"][0] == 3


@pytest.mark.parametrize("leftover", [".S1.zarr.tmp-killed", ".S1.zarr.tmp-old-killed"])
def test_a_store_rewrite_clears_its_killed_temporaries(tmp_path, leftover) -> None:
    layout = DataLayout(tmp_path)
    path = layout.mask_zarr("S1")
    path.parent.mkdir(parents=True)
    (path.parent / leftover).mkdir()
    (path.parent / ".S2.zarr.tmp-running").mkdir()
    with create_mask(path, "S1", 4, 4) as writer:
        writer.write(0, 0, np.ones((4, 4), np.int32))
    assert sorted(p.name for p in path.parent.iterdir()) == [".S2.zarr.tmp-running", "S1.zarr"]
    assert open_mask(path).read().sum() == 16


def test_a_live_writer_of_the_same_output_is_left_alone(tmp_path) -> None:
    final = tmp_path / "S1.zarr"
    ours = _temporary_sibling(final)  # this process: alive
    ours.mkdir()
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True, check=True).stdout)
    dead = tmp_path / f".S1.zarr.tmp-{_host_tag()}-{dead_pid}-0123"
    dead.mkdir()
    other_host = "00000000" if _host_tag() != "00000000" else "ffffffff"
    fresh = tmp_path / f".S1.zarr.tmp-{other_host}-42-fresh"
    old = tmp_path / f".S1.zarr.tmp-{other_host}-42-old"
    fresh.mkdir()
    old.mkdir()
    two_days_ago = time.time() - 2 * ELSEWHERE_STALE_S
    os.utime(old, (two_days_ago, two_days_ago))
    assert remove_own_temporaries(final) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ours.name, fresh.name])
