"""slide_manifest and slide_image materialise on a small cohort plus an inbox slide."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from dagster_project.defs.slides.assets import SLIDE_CHECK, slide_image, slide_manifest
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.resources import DataRoot
from storage.layout import DataLayout
from storage.slide_sources import content_sha256
from storage.slide_store import open_slide
from tests.ingest_fixtures import stain_stack, write_ome_tiff, write_tiff_folder

NAMES = ["DAPI", "CD3D", "PanKRT"]


@pytest.fixture()
def data_root(tmp_path) -> Path:
    """A cohort of two OME-TIFF slides (one patient) and a TIFF-folder slide in the inbox."""
    cohort = tmp_path / "cohort"
    (cohort / "slides").mkdir(parents=True)
    write_ome_tiff(cohort / "slides" / "s1.ome.tif", stain_stack(3, 200, 300, seed=1), NAMES)
    write_ome_tiff(cohort / "slides" / "s2.ome.tif", stain_stack(3, 150, 180, seed=2), NAMES)
    (cohort / "manifest.csv").write_text(
        "slide_id,patient_id,site,condition,path,mpp\n"
        "s1,p1,ascending_colon,normal,slides/s1.ome.tif,0.32\n"
        "s2,p1,terminal_ileum,active_crohns,slides/s2.ome.tif,\n"
    )
    write_tiff_folder(tmp_path / "inbox" / "field7", stain_stack(2, 64, 96, "uint8"),
                      ["DAPI", "VIM"], mpp=0.5)
    return tmp_path


def _resources(root: Path) -> dict:
    return {"data_root": DataRoot(root=str(root)), "slide_inputs": SlideInputs()}


def _materialize_manifest(root: Path, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize([slide_manifest], resources=_resources(root), instance=instance)


def test_slide_manifest_writes_parquet_and_registers_partitions(data_root):
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize_manifest(data_root, instance)
    assert result.success
    layout = DataLayout(data_root)
    frame = pl.read_parquet(layout.manifest_parquet)
    assert frame.columns == ["slide_id", "patient_id", "site", "condition", "path", "mpp",
                             "modality", "content_sha256"]
    assert frame["modality"].to_list() == ["mxif"] * 3
    assert frame["slide_id"].to_list() == ["field7", "s1", "s2"]
    assert frame["patient_id"].to_list() == ["field7", "p1", "p1"]
    assert frame["mpp"].to_list() == [None, 0.32, None]
    assert frame["content_sha256"][1] == content_sha256(data_root / "cohort/slides/s1.ome.tif")
    assert sorted(instance.get_dynamic_partitions("slides")) == ["field7", "s1", "s2"]
    metadata = result.asset_materializations_for_node("slide_manifest")[0].metadata
    assert metadata["slides"].value == 3 and metadata["patients"].value == 2
    assert metadata["new_partitions"].value == 3
    assert "| s1 | p1 | ascending_colon | normal | 0.32 |" in metadata["preview"].value
    again = _materialize_manifest(data_root, instance)
    assert again.asset_materializations_for_node("slide_manifest")[0].metadata[
        "new_partitions"].value == 0


def test_slide_manifest_refuses_a_duplicated_slide_and_keeps_old_parquet(data_root):
    instance = dg.DagsterInstance.ephemeral()
    _materialize_manifest(data_root, instance)
    before = DataLayout(data_root).manifest_parquet.read_bytes()
    with open(data_root / "cohort" / "manifest.csv", "a") as fh:
        fh.write("s1,p2,,,slides/s2.ome.tif,\n")
    with pytest.raises(Exception, match=r"slide id 's1' is listed twice"):
        _materialize_manifest(data_root, instance)
    assert DataLayout(data_root).manifest_parquet.read_bytes() == before


def test_slide_image_ingests_each_partition_with_metadata_and_check(data_root):
    instance = dg.DagsterInstance.ephemeral()
    _materialize_manifest(data_root, instance)
    config = {"ops": {"slide_image": {"config": {"tile_px": 128}}}}
    result = dg.materialize([slide_image], partition_key="s1", resources=_resources(data_root),
                            instance=instance, run_config=config)
    assert result.success
    reader = open_slide(DataLayout(data_root).slide_zarr("s1"))
    assert reader.info.stains == ("DAPI", "CD3d", "PanCK")
    assert reader.info.mpp == 0.32
    np.testing.assert_array_equal(reader.read(), stain_stack(3, 200, 300, seed=1))
    assert reader.source["content_sha256"] == content_sha256(data_root / "cohort/slides/s1.ome.tif")
    assert reader.source["path"].endswith("s1.ome.tif")
    metadata = result.asset_materializations_for_node("slide_image")[0].metadata
    assert metadata["stains"].value == "DAPI, CD3d, PanCK"
    assert metadata["shape"].value == "(3, 200, 300)"
    assert metadata["mb_written"].value > 0
    assert metadata["reused_unchanged_store"].value is False
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == SLIDE_CHECK and check.passed

    again = dg.materialize([slide_image], partition_key="s1", resources=_resources(data_root),
                           instance=instance, run_config=config)
    metadata = again.asset_materializations_for_node("slide_image")[0].metadata
    assert metadata["reused_unchanged_store"].value is True


def test_slide_image_of_inbox_folder_and_failed_check_without_dapi(data_root):
    instance = dg.DagsterInstance.ephemeral()
    write_tiff_folder(data_root / "inbox" / "nodapi", stain_stack(2, 32, 32, "uint8"),
                      ["CD4", "CD8"], mpp=0.5)
    _materialize_manifest(data_root, instance)
    ok = dg.materialize([slide_image], partition_key="field7", resources=_resources(data_root),
                        instance=instance)
    assert open_slide(DataLayout(data_root).slide_zarr("field7")).info.stains == ("DAPI",
                                                                                  "Vimentin")
    assert ok.get_asset_check_evaluations()[0].passed
    flagged = dg.materialize([slide_image], partition_key="nodapi",
                             resources=_resources(data_root), instance=instance)
    evaluation = flagged.get_asset_check_evaluations()[0]
    assert not evaluation.passed and evaluation.metadata["has_dapi"].value is False


def test_slide_image_of_a_slide_not_yet_in_manifest_parquet(data_root):
    """The inbox sensor may start a slide before slide_manifest has rerun."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", ["field7"])
    result = dg.materialize([slide_image], partition_key="field7",
                            resources=_resources(data_root), instance=instance)
    assert result.success
    assert open_slide(DataLayout(data_root).slide_zarr("field7")).info.mpp == 0.5


def test_required_stains_refuse_at_ingest(data_root):
    instance = dg.DagsterInstance.ephemeral()
    write_tiff_folder(data_root / "inbox" / "nodapi", stain_stack(2, 32, 32, "uint8"),
                      ["CD4", "CD8"], mpp=0.5)
    _materialize_manifest(data_root, instance)
    resources = {"data_root": DataRoot(root=str(data_root)),
                 "slide_inputs": SlideInputs(required_stains=["DAPI"])}
    with pytest.raises(Exception, match=r"nodapi: missing stain\(s\) DAPI"):
        dg.materialize([slide_image], partition_key="nodapi", resources=resources,
                       instance=instance)
    assert not DataLayout(data_root).slide_zarr("nodapi").exists()


def test_slide_image_falls_back_to_inputs_when_manifest_path_is_stale(data_root):
    instance = dg.DagsterInstance.ephemeral()
    _materialize_manifest(data_root, instance)
    parquet = DataLayout(data_root).manifest_parquet
    frame = pl.read_parquet(parquet).with_columns(
        pl.when(pl.col("slide_id") == "field7").then(pl.lit("/nowhere/field7"))
        .otherwise(pl.col("path")).alias("path"))
    frame.write_parquet(parquet)
    result = dg.materialize([slide_image], partition_key="field7",
                            resources=_resources(data_root), instance=instance)
    assert result.success
    assert open_slide(DataLayout(data_root).slide_zarr("field7")).source["path"].endswith("field7")
