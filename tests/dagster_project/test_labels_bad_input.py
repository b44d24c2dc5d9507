"""The labels stage refuses a thresholds CSV row for a slide outside the cohort (issue 16)."""

from __future__ import annotations

import dagster as dg
import pytest

from dagster_project.defs.labels.assets import manual_thresholds, stain_thresholds
from dagster_project.defs.labels.sensors import thresholds_csv_sensor
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.resources import DataRoot
from storage.layout import DataLayout
from storage.thresholds_csv import ThresholdsCsvError


def _resources(layout: DataLayout) -> dict:
    return {"data_root": DataRoot(root=str(layout.root)),
            "label_settings": LabelSettings(review_figures=False)}


def test_unknown_slide_in_the_csv_fails_thresholds_and_the_sensor(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", ["P01_S1"])
    (tmp_path / "thresholds.csv").write_text(
        "slide_id,stain,threshold\nP01_S1,CD4,10\nP99_S9,CD3d,800\n")
    with pytest.raises(ThresholdsCsvError) as info:
        dg.materialize([manual_thresholds, stain_thresholds], selection=[stain_thresholds],
                       partition_key="P01_S1", instance=instance, resources=_resources(layout))
    message = str(info.value)
    assert "line 3 ('P99_S9,CD3d,800')" in message and "known slides: P01_S1" in message
    context = dg.build_sensor_context(instance=instance, resources=_resources(layout))
    with pytest.raises(ThresholdsCsvError, match="P99_S9"):
        thresholds_csv_sensor(context)
