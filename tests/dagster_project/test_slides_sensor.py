"""The inbox sensor: new slide -> run; same content touched -> nothing; changed -> run."""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest

from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.defs.slides.sensors import (
    process_slide_job,
    slide_inbox_sensor,
    slide_manifest_job,
)
from dagster_project.resources import DataRoot
from storage.slide_sources import content_sha256
from tests.ingest_fixtures import stain_stack, write_ome_tiff


@pytest.fixture()
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def _tick(root, instance, cursor=None, settle_seconds=0.0):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"data_root": DataRoot(root=str(root)),
                   "slide_inputs": SlideInputs(settle_seconds=settle_seconds)},
    )
    return slide_inbox_sensor(context)


def _slide_runs(result):
    return [r for r in result.run_requests if r.job_name == process_slide_job.name]


def test_new_touched_and_changed_slides(tmp_path, instance):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    assert not _tick(tmp_path, instance).run_requests  # empty inbox

    slide = write_ome_tiff(inbox / "s1.ome.tif", stain_stack(2, 64, 64), ["DAPI", "CD4"])
    first = _tick(tmp_path, instance)
    runs = _slide_runs(first)
    assert [r.partition_key for r in runs] == ["s1"]
    digest = content_sha256(slide)
    assert runs[0].run_key == f"s1:{digest}"
    assert runs[0].tags["content_sha256"] == digest
    assert [r.job_name for r in first.run_requests].count(slide_manifest_job.name) == 1
    (add,) = first.dynamic_partitions_requests
    assert add.partitions_def_name == "slides" and list(add.partition_keys) == ["s1"]
    assert json.loads(first.cursor)["s1"]["content_sha256"] == digest

    stat = slide.stat()
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched only
    touched = _tick(tmp_path, instance, cursor=first.cursor)
    assert not touched.run_requests and not touched.dynamic_partitions_requests
    assert json.loads(touched.cursor)["s1"]["mtime_ns"] == stat.st_mtime_ns + 5_000_000_000

    instance.add_dynamic_partitions("slides", ["s1"])  # as the daemon would have done
    write_ome_tiff(slide, stain_stack(2, 64, 64, seed=9), ["DAPI", "CD4"])  # new content
    changed = _tick(tmp_path, instance, cursor=touched.cursor)
    assert [r.partition_key for r in _slide_runs(changed)] == ["s1"]
    assert _slide_runs(changed)[0].run_key == f"s1:{content_sha256(slide)}"
    assert not changed.dynamic_partitions_requests  # already registered


def test_slide_still_being_copied_waits(tmp_path, instance):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_ome_tiff(inbox / "s1.ome.tif", stain_stack(1, 16, 16), ["DAPI"])
    assert not _tick(tmp_path, instance, settle_seconds=3600).run_requests
    assert _slide_runs(_tick(tmp_path, instance, settle_seconds=0))


def test_badly_named_entry_is_skipped_not_blocking(tmp_path, instance):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_ome_tiff(inbox / "bad name.ome.tif", stain_stack(1, 16, 16), ["DAPI"])
    write_ome_tiff(inbox / "good.ome.tif", stain_stack(1, 16, 16), ["DAPI"])
    assert [r.partition_key for r in _slide_runs(_tick(tmp_path, instance))] == ["good"]


def test_process_slide_job_selects_only_slide_partitioned_assets():
    from dagster_project.definitions import defs

    loaded = defs()
    job = loaded.resolve_job_def(process_slide_job.name)
    graph = loaded.resolve_asset_graph()
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert "slide_image" in keys and "slide_manifest" not in keys
    for key in keys:
        partitions = graph.get(dg.AssetKey.from_user_string(key)).partitions_def
        assert getattr(partitions, "name", None) == "slides", key
    assert loaded.resolve_sensor_def("slide_inbox_sensor") is not None


@pytest.mark.slow
def test_fresh_inbox_slide_runs_green_and_inference_waits_for_a_classifier(tmp_path, instance):
    """A new lab: no classifier fold yet. The dropped slide's process_slide_job succeeds up to
    its labels, virtual H&E and patches; inference is skipped with its reason, and the first
    trained fold makes the automation sensor request it for that slide, which then runs."""
    from dagster_project.definitions import defs
    from dagster_project.defs.inference.assets import nucleus_inference
    from dagster_project.defs.labels.settings import LabelSettings
    from pipelines.synthetic import CohortParams, simulate_cohort
    from storage.cohort_files import write_cohort
    from storage.layout import DataLayout
    from storage.parquet_dataset import read_slide_partition
    from tests.inference_fixtures import fold_model, save_fold

    layout = DataLayout(tmp_path / "data")
    params = CohortParams(n_patients=1, n_slides=1, slide_px=256, seed=5)
    write_cohort(tmp_path / "incoming", simulate_cohort(params), params.as_dict())
    layout.inbox_dir.mkdir(parents=True)
    (slide,) = sorted((tmp_path / "incoming" / "slides").iterdir())
    os.link(slide, layout.inbox_dir / slide.name)

    (run,) = _slide_runs(_tick(layout.root, instance))
    instance.add_dynamic_partitions("slides", [run.partition_key])
    slide_id = run.partition_key
    loaded = defs()
    resources = {"data_root": DataRoot(root=str(layout.root)),
                 "slide_inputs": SlideInputs(settle_seconds=0.0),
                 "label_settings": LabelSettings(review_figures=False)}
    job = loaded.resolve_job_def(process_slide_job.name)
    result = job.execute_in_process(partition_key=slide_id, instance=instance,
                                    resources=resources, tags=run.tags)
    assert result.success
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"slide_image", "nucleus_mask", "nucleus_features", "stain_thresholds",
            "nucleus_labels", "virtual_he", "nucleus_patches"} <= done
    assert "nucleus_inference" not in done
    (skipped,) = [e.event_specific_data.asset_observation for e in result.all_events
                  if e.event_type_value == "ASSET_OBSERVATION"]
    assert skipped.asset_key == dg.AssetKey("nucleus_inference")
    assert "No trained classifier fold" in skipped.metadata["skipped"].value
    n_nuclei = read_slide_partition(layout.features_dir, slide_id).height
    assert read_slide_partition(layout.labels_dir, slide_id).height == n_nuclei > 0

    # the automation sensor: nothing for inference while no fold exists
    ticks = {"cursor": None}

    def tick() -> set[tuple[str, str | None]]:
        evaluated = dg.evaluate_automation_conditions(defs=loaded, instance=instance,
                                                      cursor=ticks["cursor"])
        ticks["cursor"] = evaluated.cursor
        return {(ap.asset_key.to_user_string(), ap.partition_key)
                for ap in evaluated._requested_asset_partitions}

    assert ("nucleus_inference", slide_id) not in tick()
    assert ("nucleus_inference", slide_id) not in tick()

    save_fold(layout, 0, fold_model(0))  # a classifier fold is trained
    instance.report_runless_asset_event(dg.AssetMaterialization("classifier", partition="0"))
    assert tick() == {("nucleus_inference", slide_id)}
    inferred = dg.materialize(
        [nucleus_inference], partition_key=slide_id, instance=instance, resources=resources,
        run_config={"ops": {"nucleus_inference": {"config": {"device": "cpu"}}}})
    assert inferred.success
    assert [c.passed for c in inferred.get_asset_check_evaluations()] == [True]
    table = read_slide_partition(layout.inference_dir, slide_id)
    assert table.height == read_slide_partition(layout.features_dir, slide_id).height > 0
    assert tick() == set()
