"""A badly named inbox entry is skipped with a warning, not a failed manifest (issue 16, item 9)."""

from __future__ import annotations

import dagster as dg
import polars as pl

from dagster_project.defs.slides.assets import slide_manifest
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.defs.slides.sensors import slide_inbox_sensor
from dagster_project.resources import DataRoot
from storage.layout import DataLayout
from tests.ingest_fixtures import stain_stack, write_ome_tiff


def _resources(root) -> dict:
    return {"data_root": DataRoot(root=str(root)), "slide_inputs": SlideInputs(settle_seconds=0)}


def test_badly_named_inbox_entry_is_skipped_with_a_warning(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_ome_tiff(inbox / "s1.ome.tif", stain_stack(1, 16, 16), ["DAPI"], mpp=0.5)
    write_ome_tiff(inbox / "scan 1.ome.tif", stain_stack(1, 16, 16), ["DAPI"], mpp=0.5)
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize([slide_manifest], resources=_resources(tmp_path), instance=instance)
    assert result.success
    frame = pl.read_parquet(DataLayout(tmp_path).manifest_parquet)
    assert frame["slide_id"].to_list() == ["s1"]
    metadata = result.asset_materializations_for_node("slide_manifest")[0].metadata
    assert metadata["n_skipped"].value == 1
    assert "scan 1.ome.tif: the name gives slide id 'scan 1'" in metadata["skipped"].value
    assert "rename it" in metadata["skipped"].value
    warnings = [
        e.message for e in instance.all_logs(result.run_id)
        if e.level == 30 and "Skipped an inbox entry" in (e.message or "")
    ]
    assert len(warnings) == 1 and "'scan 1'" in warnings[0]

    first = dg.build_sensor_context(instance=instance, resources=_resources(tmp_path))
    ticked = slide_inbox_sensor(first)
    assert [r.partition_key for r in ticked.run_requests if r.partition_key] == ["s1"]
    again = dg.build_sensor_context(instance=instance, cursor=ticked.cursor,
                                    resources=_resources(tmp_path))
    reason = slide_inbox_sensor(again).skip_reason.skip_message
    assert "No new or changed slides" in reason
    assert "Skipped 1 entry: " in reason and "'scan 1'" in reason
