"""Dagster wiring for nucleus-subtyping: assets, partitions, sensors, schedules, resources."""
