"""Every store round-trips on object storage (fsspec `memory://`, no network), replacements are
all-or-nothing, and local paths keep their `Path`s and bytes."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from upath import UPath

from storage import classifier_checkpoints as ckpt
from storage import fs as storage_fs
from storage.atomic import atomic_path, atomic_write_text
from storage.catalog import CatalogSpec, ParquetSource, build_catalog, query_catalog
from storage.checkpoints import checkpoint_exists, load_checkpoint, save_checkpoint
from storage.errors import StoreLayoutError
from storage.folds import folds_path, read_folds, write_folds
from storage.fs import as_path, is_remote
from storage.layout import DataLayout
from storage.manifest import MANIFEST_SCHEMA, read_manifest_parquet, write_manifest
from storage.mask_store import create_mask, open_mask
from storage.parquet_dataset import (
    dataset_glob,
    delete_slide_partition,
    read_slide_partition,
    scan_dataset,
    slide_ids,
    write_slide_partition,
)
from storage.patch_chunks import PatchChunkReader
from storage.patch_store import PatchStore, create_slide_patches, ensure_store, patch_order
from storage.slide_store import SlideInfo, create_slide, open_slide
from storage.vhe_store import VirtualHELevel, create_vhe, open_vhe


@pytest.fixture
def root() -> UPath:
    """A fresh in-memory bucket per test, emptied afterwards."""
    path = UPath(f"memory://test-{uuid.uuid4().hex[:8]}/data")
    yield path
    if path.fs.exists(path.path):
        path.fs.rm(path.path, recursive=True)


def _slide(seed: int = 0, shape=(2, 150, 100)) -> tuple[SlideInfo, np.ndarray]:
    image = np.random.default_rng(seed).integers(0, 4000, shape, dtype=np.uint16)
    return SlideInfo("S1", ("DAPI", "CD3d")[: shape[0]], 0.5, shape[1], shape[2], "uint16"), image


def _write_slide(path, info, image, chunk_px=64):
    with create_slide(path, info, source={"content_sha256": "x"}, chunk_px=chunk_px) as writer:
        writer.write(0, 0, image)


def _keys(path: UPath) -> list[str]:
    base = path.path.rstrip("/")
    return sorted(p[len(base) + 1 :] for p in path.fs.find(base))


# ------------------------------------------------------------------------------ paths


def test_paths_local_stay_path_and_urls_become_upath(tmp_path, root):
    assert type(as_path("data")) is type(Path("data")) and not is_remote("data")
    assert as_path(f"file://{tmp_path}") == tmp_path and not is_remote(f"file://{tmp_path}")
    assert is_remote("s3://bucket/prefix") and is_remote("gs://b/x") and is_remote(str(root))
    local = DataLayout(tmp_path)
    assert local.root == tmp_path and local.slide_zarr("S1") == tmp_path / "slides" / "S1.zarr"
    remote = DataLayout(str(root))
    assert isinstance(remote.root, UPath) and not isinstance(remote.root, Path)
    assert str(remote.slide_zarr("S1")) == f"{root}/slides/S1.zarr"
    assert str(remote.features_dir) == f"{root}/nucleus_features"
    assert dataset_glob(remote.features_dir) == f"{root}/nucleus_features/slide_id=*/part-0.parquet"


def test_s3_zarr_store_carries_storage_options():
    pytest.importorskip("s3fs")
    store = storage_fs.zarr_store(UPath("s3://bucket/prefix/a.zarr", anon=True), read_only=True)
    assert store.path == "bucket/prefix/a.zarr" and store.read_only and store.fs.anon


# ------------------------------------------------------------------------------ Zarr stores


def test_slide_store_round_trip_and_same_chunk_bytes_as_local(tmp_path, root):
    info, image = _slide()
    layout = DataLayout(str(root))
    _write_slide(layout.slide_zarr("S1"), info, image)
    reader = open_slide(layout.slide_zarr("S1"))
    assert reader.info == info and reader.source == {"content_sha256": "x"}
    window = reader.read(10, 20, 90, 70, stains=["CD3d"])
    np.testing.assert_array_equal(window, image[1:, 10:90, 20:70])
    keys = _keys(layout.slide_zarr("S1"))
    assert keys[-1] == "zarr.json" and "image/c/1/2/1" in keys
    assert not any(".tmp-" in k for k in keys)
    _write_slide(tmp_path / "S1.zarr", info, image)
    for key in ("image/c/0/0/0", "image/c/1/2/1"):
        remote_bytes = (layout.slide_zarr("S1") / key).read_bytes()
        assert remote_bytes == (tmp_path / "S1.zarr" / key).read_bytes()


def test_mask_and_vhe_round_trip(root):
    labels = np.arange(120 * 90, dtype=np.int32).reshape(120, 90) % 17
    with create_mask(root / "masks" / "S1.zarr", "S1", 120, 90, attrs={"backend": "t"},
                     chunk_px=64) as writer:
        writer.write(0, 0, labels)
    mask = open_mask(root / "masks" / "S1.zarr")
    assert mask.attrs["backend"] == "t" and mask.height_px == 120
    np.testing.assert_array_equal(mask.read(), labels)
    rgb = np.random.default_rng(1).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    levels = [VirtualHELevel(0.32, 120, 90, 64), VirtualHELevel(0.5, 77, 58, 64)]
    with create_vhe(root / "vhe" / "S1.zarr", "S1", levels, backend="test") as writer:
        writer.write(0, 0, 0, rgb)
        writer.write(1, 0, 0, rgb[:77, :58])
    vhe = open_vhe(root / "vhe" / "S1.zarr")
    assert vhe.level_of(0.5) == 1 and vhe.shape(1) == (77, 58)
    np.testing.assert_array_equal(vhe.read(level=0), rgb)


def test_replacing_a_store_drops_the_old_chunks(root):
    """Chunks left at the fill value are never written: the old ones must not shine through."""
    info, image = _slide()
    path = root / "slides" / "S1.zarr"
    _write_slide(path, info, image)
    _write_slide(path, info, np.zeros_like(image))
    np.testing.assert_array_equal(open_slide(path).read(), 0)
    assert [k for k in _keys(path) if "/c/" in k] == []


def test_failed_write_leaves_the_old_store_readable(root):
    info, image = _slide()
    path = root / "slides" / "S1.zarr"
    _write_slide(path, info, image)
    before = _keys(path)
    with pytest.raises(RuntimeError), create_slide(path, info, chunk_px=64) as writer:
        writer.write(0, 0, image[:, ::-1, :].copy())
        raise RuntimeError("reader died half-way")
    assert _keys(path) == before
    np.testing.assert_array_equal(open_slide(path).read(), image)


def test_failed_upload_leaves_no_half_store(root, monkeypatch):
    """An upload cut off after the chunks: the store is absent (commit file missing), never a
    mixture; the next write publishes it whole."""
    info, image = _slide()
    path = root / "slides" / "S1.zarr"
    _write_slide(path, info, image)
    real_put, calls = path.fs.put, []

    def put_then_fail(lpaths, rpaths, *args, **kwargs):
        calls.append(rpaths)
        if any(r.endswith("/zarr.json") and r.count("/") == path.path.count("/") + 1
               for r in rpaths):
            raise OSError("connection reset")
        return real_put(lpaths, rpaths, *args, **kwargs)

    monkeypatch.setattr(type(path.fs), "put", lambda self, *a, **k: put_then_fail(*a, **k))
    with pytest.raises(OSError, match="connection reset"):
        _write_slide(path, info, image + 1)
    assert len(calls) == 2  # the arrays went up, the commit file did not
    with pytest.raises(StoreLayoutError, match="No slide store"):
        open_slide(path)
    monkeypatch.undo()
    _write_slide(path, info, image + 1)
    np.testing.assert_array_equal(open_slide(path).read(), image + 1)


def test_patch_store_round_trip(root):
    store = root / "patches.zarr"
    ensure_store(store, 8, 0.5, ["a", "b"])
    ensure_store(store, 8, 0.5, ["a", "b"])  # idempotent
    with pytest.raises(StoreLayoutError):
        ensure_store(store, 16, 0.5, ["a", "b"])
    for slide_id, n in (("S1", 300), ("S2", 5)):
        rng = np.random.default_rng(n)
        class_index = np.sort(rng.integers(-1, 2, n)).astype(np.int16)
        nucleus_id = np.arange(n, dtype=np.int64)
        order = patch_order(class_index, nucleus_id)
        images = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
        with create_slide_patches(store, slide_id, nucleus_id[order], class_index[order],
                                  np.zeros(n, bool), 8) as writer:
            writer.write_block(0, images)
    patches = PatchStore(store)
    assert patches.slide_ids() == ["S1", "S2"] and patches.cell_types == ("a", "b")
    slide = patches.slide("S1")
    assert slide.n_patches == 300 and sum(b - a for a, b in slide.class_ranges.values()) == 300
    reader = PatchChunkReader(slide)
    assert not reader.fast  # the fast path is for local chunk files
    np.testing.assert_array_equal(reader.read_rows(np.array([299, 0, 128])),
                                  slide.read_rows(0, 300)[[299, 0, 128]])


# ------------------------------------------------------------------------------ Parquet


def test_parquet_partitions_round_trip_and_replace(root):
    dataset = root / "nucleus_features"
    assert slide_ids(dataset) == []
    a = pl.DataFrame({"nucleus_id": [1, 2, 3], "area_px": [10, 20, 30]})
    b = pl.DataFrame({"nucleus_id": [7], "area_px": [70]})
    write_slide_partition(dataset, "S1", a)
    write_slide_partition(dataset, "S2", b)
    assert slide_ids(dataset) == ["S1", "S2"]
    assert read_slide_partition(dataset, "S1")["area_px"].to_list() == [10, 20, 30]
    total = scan_dataset(dataset).select(pl.col("area_px").sum()).collect().item()
    assert total == 130
    write_slide_partition(dataset, "S1", a.head(1))
    assert read_slide_partition(dataset, "S1").height == 1
    with pytest.raises(ValueError), atomic_path(dataset / "slide_id=S2" / "part-0.parquet") as tmp:
        b.write_parquet(tmp)
        raise ValueError("failed after writing")
    assert read_slide_partition(dataset, "S2")["nucleus_id"].to_list() == [7]
    delete_slide_partition(dataset, "S2")
    assert slide_ids(dataset) == ["S1"]
    with pytest.raises(FileNotFoundError):
        read_slide_partition(dataset, "S2")


def test_parquet_bytes_match_local(tmp_path, root):
    frame = pl.DataFrame({"nucleus_id": [1, 2], "slide_id": ["S1", "S1"]})
    local = write_slide_partition(tmp_path / "ds", "S1", frame)
    remote = write_slide_partition(root / "ds", "S1", frame)
    assert isinstance(local, Path) and remote.read_bytes() == local.read_bytes()


def test_manifest_folds_and_text_files(root):
    manifest = pl.DataFrame({"slide_id": ["S1"], "patient_id": ["P1"], "site": [None],
                             "condition": [None], "path": ["s3://in/S1.ome.tif"], "mpp": [0.5],
                             "modality": ["mxif"], "content_sha256": ["ab"]},
                            schema=MANIFEST_SCHEMA)
    write_manifest(manifest, DataLayout(str(root)).manifest_parquet)
    assert read_manifest_parquet(DataLayout(str(root)).manifest_parquet).equals(manifest)
    folds = pl.DataFrame({"patient_id": ["P1"], "fold": [0], "role": ["test"]})
    write_folds(folds_path(root), folds)
    assert read_folds(folds_path(root)).equals(folds)
    written = atomic_write_text(root / "reports" / "r.md", "# report\n")
    assert written == root / "reports" / "r.md" and written.read_text() == "# report\n"


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoints_round_trip(root):
    weights = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    folder = root / "models" / "cyclegan"
    save_checkpoint(folder, {"gen": weights}, {"stains": ("DAPI",)}, kind="cyclegan")
    assert checkpoint_exists(folder) and _keys(folder) == ["checkpoint.json", "state.pt"]
    loaded = load_checkpoint(folder, kind="cyclegan")
    assert torch.equal(loaded.state_dicts["gen"]["w"], weights["w"])
    assert loaded.metadata == {"stains": ["DAPI"]}
    with pytest.raises(TypeError):  # not JSON: fails before anything is written
        save_checkpoint(folder, {"gen": {}}, {"bad": object()}, kind="cyclegan")
    assert torch.equal(load_checkpoint(folder).state_dicts["gen"]["w"], weights["w"])

    fold = ckpt.fold_dir(root / "models", 0)
    ckpt.save_model(fold, weights, {"best_step": 3})
    ckpt.save_training_state(fold, {"model": weights, "step": 5})
    state, meta = ckpt.load_model(fold)
    assert torch.equal(state["w"], weights["w"]) and meta == {"best_step": 3}
    assert ckpt.load_training_state(fold)["step"] == 5
    ckpt.clear_training_state(fold)
    assert ckpt.load_training_state(fold) is None and ckpt.load_model_metadata(fold)


# ------------------------------------------------------------------------------ catalog


def test_catalog_built_locally_uploaded_and_queried(root):
    layout = DataLayout(str(root))
    write_slide_partition(layout.features_dir, "S1", pl.DataFrame({"nucleus_id": [1, 2]}))
    write_slide_partition(layout.features_dir, "S2", pl.DataFrame({"nucleus_id": [3]}))
    spec = CatalogSpec(
        sources=(ParquetSource("nucleus_features", dataset_glob(layout.features_dir)),
                 ParquetSource("nucleus_labels", dataset_glob(layout.labels_dir),
                               "nucleus_id BIGINT, slide_id VARCHAR")),
        scripts=("CREATE VIEW per_slide AS SELECT slide_id, count(*) AS n "
                 "FROM nucleus_features GROUP BY slide_id",),
    )
    path = build_catalog(layout.catalog_db, spec)
    assert path == layout.catalog_db and _keys(root).count("catalog.duckdb") == 1
    counts = query_catalog(path, "SELECT * FROM per_slide ORDER BY slide_id")
    assert counts.rows() == [("S1", 2), ("S2", 1)]
    write_slide_partition(layout.features_dir, "S2", pl.DataFrame({"nucleus_id": [3, 4, 5]}))
    assert query_catalog(path, "SELECT sum(n) FROM per_slide").item() == 5  # views read live
