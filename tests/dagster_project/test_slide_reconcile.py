"""A slide renamed in the manifest (A2_typo -> A2) is retired, and nothing counts it twice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from dagster_project.defs.labels.assets import (
    manual_thresholds,
    nucleus_catalog,
    nucleus_labels,
    stain_thresholds,
)
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.defs.nuclei.assets import nucleus_features, nucleus_mask
from dagster_project.defs.slides.assets import slide_image, slide_manifest
from dagster_project.defs.slides.reconcile import (
    plan_slides,
    reconcile_slides,
    reconcile_slides_job,
)
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.resources import DataRoot
from pipelines.synthetic import CohortParams, simulate_cohort
from storage.catalog import query_catalog
from storage.cohort_files import write_cohort
from storage.layout import DataLayout
from storage.parquet_dataset import slide_ids, write_slide_partition
from storage.patch_store import PatchStore, create_slide_patches, ensure_store
from storage.retired_slides import read_retired, retire_slide, slides_with_outputs

SLIDE_STAGES = [slide_image, nucleus_mask, nucleus_features, manual_thresholds,
                stain_thresholds, nucleus_labels]
ASSETS = [slide_manifest, *SLIDE_STAGES, nucleus_catalog]
CONFIG = {"ops": {"nucleus_mask": {"config": {"tile_px": 256}},
                  "nucleus_features": {"config": {"tile_px": 256}}}}
COUNTS = ("SELECT cell_type, n_nuclei, n_slides FROM cell_type_counts ORDER BY class_index")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Two simulated 128 px slides and their OME-TIFFs, written once for every test here."""
    cohort_dir = tmp_path_factory.mktemp("sim") / "cohort"
    params = CohortParams(n_patients=2, n_slides=2, slide_px=256, seed=3)
    write_cohort(cohort_dir, simulate_cohort(params), params.as_dict())
    return cohort_dir


def _root(tmp_path: Path, cohort: Path, name: str, ids: tuple[str, str]) -> Path:
    root = tmp_path / name
    _write_manifest(root, cohort, ids)
    return root


def _write_manifest(root: Path, cohort: Path, ids: tuple[str, str]) -> None:
    sim = pl.read_csv(cohort / "manifest.csv").sort("slide_id")
    rows = [f"{new},p{i},ascending_colon,normal,{cohort / path},{mpp}"
            for i, (new, path, mpp) in enumerate(zip(ids, sim["path"], sim["mpp"], strict=True))]
    (root / "cohort").mkdir(parents=True, exist_ok=True)
    (root / "cohort" / "manifest.csv").write_text(
        "slide_id,patient_id,site,condition,path,mpp\n" + "\n".join(rows) + "\n")


def _resources(root: Path) -> dict:
    return {"data_root": DataRoot(root=str(root)), "slide_inputs": SlideInputs(),
            "label_settings": LabelSettings(review_figures=False),
            "mesmer_pipes": dg.PipesSubprocessClient()}


def _run_chain(root: Path, instance: dg.DagsterInstance) -> pl.DataFrame:
    """slide_manifest, every slide stage for each partition, then the catalog's counts."""
    resources = _resources(root)
    assert dg.materialize(ASSETS, selection=[slide_manifest], instance=instance,
                          resources=resources).success
    for slide_id in sorted(instance.get_dynamic_partitions("slides")):
        assert dg.materialize(ASSETS, selection=SLIDE_STAGES, partition_key=slide_id,
                              instance=instance, resources=resources, run_config=CONFIG).success
    assert dg.materialize(ASSETS, selection=[nucleus_catalog], instance=instance,
                          resources=resources).success
    return query_catalog(DataLayout(root).catalog_db, COUNTS)


def _catalog_rows(root: Path) -> dict[str, int]:
    db = DataLayout(root).catalog_db
    return {view: query_catalog(db, f"SELECT count(*) FROM {view}").item()
            for view in ("nucleus_features", "nucleus_labels", "stain_positivity")}


@pytest.mark.parametrize("delete_partition_by_hand", [True, False])
def test_renamed_slide_is_retired_and_counts_match_a_clean_run(
    tmp_path, cohort, delete_partition_by_hand
) -> None:
    clean_root = _root(tmp_path, cohort, "clean", ("A1", "A2"))
    clean = _run_chain(clean_root, dg.DagsterInstance.ephemeral())

    root = _root(tmp_path, cohort, "renamed", ("A1", "A2_typo"))
    instance = dg.DagsterInstance.ephemeral()
    first = _run_chain(root, instance)
    assert first.equals(clean)  # the same pixels under another name
    _write_manifest(root, cohort, ("A1", "A2"))
    if delete_partition_by_hand:
        instance.delete_dynamic_partition("slides", "A2_typo")
    again = _run_chain(root, instance)

    assert sorted(instance.get_dynamic_partitions("slides")) == ["A1", "A2"]
    assert again.equals(clean)
    assert again["n_nuclei"].sum() == clean["n_nuclei"].sum() > 0
    assert _catalog_rows(root) == _catalog_rows(clean_root)
    layout = DataLayout(root)
    assert slide_ids(layout.features_dir) == slide_ids(layout.labels_dir) == ["A1", "A2"]
    assert sorted(slides_with_outputs(layout)) == ["A1", "A2"]
    log = read_retired(layout)
    assert log["slide_id"].to_list() == ["A2_typo"]
    moved = Path(log["moved_to"][0])
    assert moved.parent == layout.retired_dir and moved.name.endswith("_A2_typo")
    assert (moved / "nucleus_features" / "slide_id=A2_typo" / "part-0.parquet").is_file()
    assert (moved / "slides" / "A2_typo.zarr").is_dir()
    assert not layout.slide_zarr("A2_typo").exists()
    manifest_events = instance.fetch_materializations(dg.AssetKey("slide_manifest"), limit=1)
    metadata = manifest_events.records[0].asset_materialization.metadata
    assert metadata["retired_slides"].value == 1 and metadata["new_partitions"].value == 1
    assert metadata["retired"].value[0]["slide_id"] == "A2_typo"
    # a later run of every slide stage, as automation would launch it, does not fail
    for slide_id in instance.get_dynamic_partitions("slides"):
        assert dg.materialize(ASSETS, selection=[slide_image], partition_key=slide_id,
                              instance=instance, resources=_resources(root)).success


def test_plan_adds_new_slides_and_retires_departed_ones() -> None:
    plan = plan_slides(["A1", "A2", "B1"], ["A1", "A2_typo"], ["A1", "A2_typo", "old"])
    assert plan.add == ("A2", "B1") and plan.retire == ("A2_typo", "old")
    assert plan_slides(["A1"], ["A1"], ["A1"]) == plan_slides(["A1"], ["A1"])


def test_retire_moves_dataset_partition_and_patch_group_and_logs(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    for slide_id in ("A1", "gone"):
        write_slide_partition(layout.features_dir, slide_id,
                              pl.DataFrame({"nucleus_id": [1, 2], "slide_id": [slide_id] * 2}))
        ensure_store(layout.patch_store, 8, 0.5, ["a", "b"])
        with create_slide_patches(layout.patch_store, slide_id, np.array([1, 2]),
                                  np.array([0, 1]), np.array([False, False]), 8) as writer:
            writer.write_block(0, np.zeros((2, 8, 8, 3), np.uint8))
    when = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
    record = retire_slide(layout, "gone", "renamed", now=when)
    assert record.paths == ("nucleus_features/slide_id=gone", "patches.zarr/gone")
    assert record.moved_to == str(layout.retired_dir / "20261202T210000.000000Z_gone")
    assert PatchStore(layout.patch_store).slide_ids() == ["A1"]
    assert slide_ids(layout.features_dir) == ["A1"]
    assert PatchStore(Path(record.moved_to) / "patches.zarr").slide("gone").n_patches == 2
    log = read_retired(layout)
    assert log.select("slide_id", "retired_at", "reason", "n_paths").rows() == [
        ("gone", "2026-12-02T21:00:00+00:00", "renamed", 2)]


def test_reconcile_job_and_dry_run(tmp_path, cohort) -> None:
    root = _root(tmp_path, cohort, "job", ("A1", "A2"))
    layout = DataLayout(root)
    write_slide_partition(layout.labels_dir, "A3", pl.DataFrame({"nucleus_id": [7]}))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", ["A1", "A3"])
    dry = reconcile_slides(instance, layout, SlideInputs(), dry_run=True)
    assert dry.added == ("A2",) and [r.slide_id for r in dry.retired] == ["A3"]
    assert sorted(instance.get_dynamic_partitions("slides")) == ["A1", "A3"]
    assert slide_ids(layout.labels_dir) == ["A3"]
    result = reconcile_slides_job.execute_in_process(
        instance=instance, resources={"data_root": DataRoot(root=str(root)),
                                      "slide_inputs": SlideInputs()})
    assert result.success and result.output_for_node("reconcile_slides_op") == 1
    assert sorted(instance.get_dynamic_partitions("slides")) == ["A1", "A2"]
    assert slide_ids(layout.labels_dir) == []
    assert read_retired(layout)["slide_id"].to_list() == ["A3"]


def test_inbox_sensor_retires_a_departed_slide_and_not_on_a_broken_manifest(
    tmp_path, cohort
) -> None:
    from dagster_project.defs.slides.sensors import slide_inbox_sensor

    root = _root(tmp_path, cohort, "sensor", ("A1", "A2"))
    write_slide_partition(DataLayout(root).features_dir, "A2_typo",
                          pl.DataFrame({"nucleus_id": [1]}))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", ["A1", "A2", "A2_typo"])

    def tick():
        return slide_inbox_sensor(dg.build_sensor_context(
            instance=instance, resources={"data_root": DataRoot(root=str(root)),
                                          "slide_inputs": SlideInputs(settle_seconds=0.0)}))

    result = tick()
    (delete,) = result.dynamic_partitions_requests
    assert isinstance(delete, dg.DeleteDynamicPartitionsRequest)
    assert list(delete.partition_keys) == ["A2_typo"]
    assert [r.job_name for r in result.run_requests] == [reconcile_slides_job.name]
    assert result.run_requests[0].run_key == "retire:A2_typo:0"
    assert slide_ids(DataLayout(root).features_dir) == ["A2_typo"]  # moved by the job, not here

    (root / "cohort" / "manifest.csv").write_text("slide_id,path\nA1,missing.tif\n")
    broken = tick()  # an unreadable manifest never retires anything
    assert not broken.run_requests and not broken.dynamic_partitions_requests
