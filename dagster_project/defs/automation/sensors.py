"""The automation sensor, on by default: it evaluates the assets' `automation_condition`s
(dagster_project/automation.py) and requests the partitions that need work."""

import dagster as dg

automation = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="New slides flow through every slide stage; changed inputs re-run only what "
    "depends on them; failed or missing partitions are retried nightly.",
)
