"""When Dagster runs each asset by itself (declarative automation), shared by every stage.

The `automation` sensor (dagster_project/defs/automation/sensors.py, on by default) evaluates
these conditions every 30 s and requests only the partitions that need work:

- `NEW_SLIDE` (slide_image): a slide partition that appeared (the manifest or the inbox sensor
  added it) and is not being ingested yet. The `weekly_source_recheck` schedule
  (defs/automation/schedules.py) re-ingests every slide at `WEEKLY_CRON`: one whose source
  has the same content writes nothing and keeps its data version, so nothing downstream runs.
- `SLIDE_STAGE` (every slide-partitioned stage after it): the slide's upstream stage produced a
  new data version. Data versions, not mere re-runs, count: a slide re-ingested with the same
  content, or thresholds recomputed to the same values, start nothing downstream.
- `COHORT_VIEW` (catalog, gallery): some slide's upstream output changed and no slide of it
  is being processed at the moment, so a 200-slide batch rebuilds the catalog once, at its end.
- `INFERENCE` (nucleus_inference): as `SLIDE_STAGE`, once at least one classifier fold is
  trained. A new lab's slides are processed before any fold exists (the asset is skipped in
  their runs); the first trained fold, and every retrained one, then starts inference of each
  slide whose inputs are there, after the training runs in progress have finished.
- Every night (`NIGHTLY_CRON`), partitions whose last run failed, or that are missing although
  their inputs exist (e.g. added while the sensor was off), are retried once.

The inbox sensor's `process_slide_job` runs the same stages in one run; a stage it already ran
after its input changed counts as handled, so nothing runs twice.
"""

from __future__ import annotations

import dagster as dg

AC = dg.AutomationCondition

NIGHTLY_CRON = "0 2 * * *"  # retry failed or missing partitions (UTC)
WEEKLY_CRON = "0 3 * * 0"  # re-check every slide's source content (UTC, Sundays)


CLASSIFIER = dg.AssetSelection.assets("classifier")
EVERY_ASSET = dg.AssetSelection.all()


def _deps_missing(among: dg.AssetSelection = EVERY_ASSET) -> dg.AutomationCondition:
    """An input asset (of `among`) is missing; observed sources (the manual thresholds CSV)
    never block."""
    return AC.any_deps_missing().allow(among)


def _inputs_ready(deps_missing: dg.AutomationCondition | None = None) -> dg.AutomationCondition:
    return ~(deps_missing or _deps_missing()) & ~AC.any_deps_in_progress() & ~AC.in_progress()


def _deps_changed() -> dg.AutomationCondition:
    """Some input has a new data version (ignoring updates by a run that also runs this asset)."""
    return AC.any_deps_match(
        (AC.data_version_changed() & ~AC.executed_with_root_target()).with_label(
            "data_version_changed_without_root"
        )
        | AC.will_be_requested()
    ).with_label("any_deps_changed")


def nightly_retry(deps_missing: dg.AutomationCondition | None = None) -> dg.AutomationCondition:
    """At the nightly tick: partitions that failed last time or are missing, inputs present."""
    return (
        AC.cron_tick_passed(NIGHTLY_CRON)
        & (AC.missing() | AC.execution_failed())
        & _inputs_ready(deps_missing)
    ).with_label("nightly_retry")


def _slide_stage(deps_missing: dg.AutomationCondition,
                 deps_changed: dg.AutomationCondition | None = None) -> dg.AutomationCondition:
    return (
        AC.eager()
        .replace("any_deps_updated", deps_changed or _deps_changed())
        .replace("any_deps_missing", deps_missing)
        .with_label("inputs_changed")
        | nightly_retry(deps_missing)
    )


NEW_SLIDE = (
    (AC.missing().newly_true().since_last_handled() & ~_deps_missing() & ~AC.in_progress())
    .with_label("new_slide")
    | nightly_retry()
).with_label("slide_image")

SLIDE_STAGE = _slide_stage(_deps_missing()).with_label("slide_stage")

# nucleus_inference reads every trained fold (AllPartitionMapping): one is enough, and none
# blocks it like a missing input. A fold newly materialised counts as a changed input, so the
# first fold starts inference of every slide whose inputs are there, and a retrained fold
# re-runs it (once the training runs in progress have finished).
_NO_FOLD_TRAINED = (~AC.any_deps_match(~AC.missing()).allow(CLASSIFIER)).with_label(
    "no_classifier_fold_trained")
_FOLD_TRAINED = AC.any_deps_match(AC.newly_updated()).allow(CLASSIFIER).with_label(
    "a_classifier_fold_updated")
INFERENCE = _slide_stage(
    (_deps_missing(EVERY_ASSET - CLASSIFIER) | _NO_FOLD_TRAINED).with_label(
        "any_deps_missing"),
    (_deps_changed() | _FOLD_TRAINED).with_label("any_deps_changed"),
).with_label("inference")

# Updates only (not partitions requested on this tick): a cohort view requested beside slide
# runs would start in its own run at once, before the slides it is meant to show.
COHORT_VIEW = (
    AC.any_deps_match(AC.newly_updated()).with_label("any_deps_updated").since_last_handled()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label("after_slides_settle")

# slide_manifest: re-read when the synthetic cohort is regenerated (the inbox sensor runs it too)
MANIFEST = AC.eager()
