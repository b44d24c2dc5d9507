"""The weekly re-check of every ingested slide's source file, on by default."""

import dagster as dg

from dagster_project.automation import WEEKLY_CRON
from dagster_project.partitions import slide_partitions


@dg.schedule(
    cron_schedule=WEEKLY_CRON,
    execution_timezone="UTC",
    target=dg.AssetSelection.assets("slide_image"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def weekly_source_recheck(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Re-ingest every slide that has been ingested: one whose file kept its content writes
    nothing and keeps its data version, so nothing downstream runs; one whose file changed in
    place (a manifest slide the inbox sensor does not watch) re-runs its stages by automation."""
    ingested = context.instance.get_materialized_partitions(dg.AssetKey("slide_image"))
    known = context.instance.get_dynamic_partitions(slide_partitions.name)
    week = context.scheduled_execution_time.strftime("%G-W%V")
    return [dg.RunRequest(partition_key=slide_id, run_key=f"recheck:{slide_id}:{week}")
            for slide_id in known if slide_id in ingested]
