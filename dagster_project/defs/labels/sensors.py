"""Re-label the slides whose rows in the manual thresholds CSV changed, and only those."""

import json

import dagster as dg

from dagster_project.defs.labels import wiring
from dagster_project.defs.labels.assets import nucleus_labels, stain_thresholds
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot


@dg.sensor(
    target=[stain_thresholds, nucleus_labels],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def thresholds_csv_sensor(
    context: dg.SensorEvaluationContext, data_root: DataRoot, label_settings: LabelSettings
) -> dg.SensorResult:
    """Compares each slide's hash of its CSV rows with the last tick; requests one run per
    changed slide. The first tick only records the hashes."""
    slides = context.instance.get_dynamic_partitions(slide_partitions.name)
    versions = wiring.manual_thresholds_versions(label_settings.csv_path(data_root.layout), slides)
    if context.cursor is None:
        return dg.SensorResult(cursor=json.dumps(versions))
    previous = json.loads(context.cursor)
    changed = [s for s in slides if previous.get(s, "auto") != versions[s]]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=s, run_key=f"{s}:{versions[s]}")
                      for s in changed],
        cursor=json.dumps(versions),
    )
