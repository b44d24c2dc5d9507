"""virtual_he, nucleus_patches and patch_gallery materialise on a phantom slide."""

import dagster as dg
import numpy as np
import polars as pl
import pytest

from dagster_project.defs.vhe.assets import nucleus_patches, patch_gallery, virtual_he
from dagster_project.resources import DataRoot
from pipelines.ids import nucleus_ids
from storage.layout import DataLayout
from storage.parquet_dataset import write_slide_partition
from storage.patch_store import PatchStore
from storage.slide_store import SlideInfo, create_slide
from storage.vhe_store import open_vhe
from tests.vhe_phantom import make_phantom

SLIDE = "P01_S1"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    layout = DataLayout(root)
    ph = make_phantom(260, 300, seed=3)
    info = SlideInfo(SLIDE, ph.stains, 0.32, 260, 300, "uint16")
    with create_slide(layout.slide_zarr(SLIDE), info, chunk_px=128) as writer:
        writer.write(0, 0, ph.image)
    ids = nucleus_ids(SLIDE, np.arange(1, len(ph.centroid_y_px) + 1))
    features = pl.DataFrame({
        "nucleus_id": ids, "slide_id": SLIDE,
        "centroid_y_px": ph.centroid_y_px, "centroid_x_px": ph.centroid_x_px,
    })
    class_index = np.where(ph.compartment == 0, 2, np.where(ph.compartment == 1, 5, 13))
    class_index[::10] = -1  # excluded nuclei get no patch
    labels = pl.DataFrame({
        "nucleus_id": ids, "slide_id": SLIDE,
        "class_index": pl.Series(class_index, dtype=pl.Int16),
    })
    write_slide_partition(layout.features_dir, SLIDE, features)
    write_slide_partition(layout.labels_dir, SLIDE, labels)
    return root, int((class_index >= 0).sum())


def _materialise(assets, root, partition_key=None):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", [SLIDE])
    return dg.materialize(
        assets, instance=instance, partition_key=partition_key,
        resources={"data_root": DataRoot(root=str(root))},
    )


def test_virtual_he_then_patches_then_gallery(data_root):
    root, n_labelled = data_root
    layout = DataLayout(root)
    result = _materialise([virtual_he], root, SLIDE)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]
    vhe = open_vhe(layout.vhe_zarr(SLIDE))
    assert vhe.shape(0) == (260, 300) and vhe.shape(1) == (166, 192)
    assert vhe.backend == "beer_lambert" and "normalisation" in vhe.params
    assert (layout.figures_dir("vhe") / f"{SLIDE}.png").exists()

    result = _materialise([nucleus_patches], root, SLIDE)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    slide = PatchStore(layout.patch_store).slide(SLIDE)
    assert slide.n_patches == n_labelled and slide.chunk_rows == 128
    assert set(slide.class_ranges) == {2, 5, 13}
    a, b = slide.class_ranges[5]
    assert (slide.class_index[a:b] == 5).all()
    assert np.all(np.diff(slide.nucleus_id[a:b]) > 0)
    images = slide.read_rows(0, slide.n_patches)
    assert images.shape == (n_labelled, 41, 41, 3) and images.std() > 10

    result = _materialise([patch_gallery], root)
    assert result.success
    png = layout.figures_dir("patches") / "gallery.png"
    assert png.exists() and png.stat().st_size > 5000
