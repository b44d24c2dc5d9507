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
