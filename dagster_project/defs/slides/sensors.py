"""The inbox sensor and the jobs it starts.

`process_slide_job` runs, for one slide partition, every asset downstream of `slide_image`
(itself included) that is partitioned by the dynamic `slides` partitions. It selects
"downstream of slide_image AND dynamically partitioned" rather than a group or a list of names,
so a later stage joins it just by being slide-partitioned and depending on the chain, while the
unpartitioned and fold-partitioned assets further down (catalog, models, reports) stay out.
(The `he` group, real H&E slides on their own `he_slides` partitions, is left out.)
"""

import hashlib
import json

import dagster as dg

from dagster_project.defs.slides import wiring
from dagster_project.defs.slides.reconcile import (
    SlideReconciliation,
    reconcile_slides,
    reconcile_slides_job,
)
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from storage.errors import StorageError
from storage.retired_slides import read_retired
from storage.slide_sources import changed_slides

SLIDE_STAGES = (dg.AssetSelection.assets("slide_image").downstream()
                & dg.AssetSelection.from_string('partitions:"dynamic"')
                ) - dg.AssetSelection.groups("he")

# Assets tagged ON_REQUEST (exports that copy a slide's pixels, e.g. slide_ome_zarr) stay out
# of process_slide_job: they run only when asked for.
ON_REQUEST = {"run": "on_request"}
SLIDE_STAGES = SLIDE_STAGES - dg.AssetSelection.tag("run", ON_REQUEST["run"])

process_slide_job = dg.define_asset_job(
    "process_slide_job",
    selection=SLIDE_STAGES,
    description="Ingest one slide and run every slide-partitioned stage after it.",
)
slide_manifest_job = dg.define_asset_job(
    "slide_manifest_job",
    selection=dg.AssetSelection.assets("slide_manifest"),
    description="Re-read the manifest and the inbox, hash the slides, write manifest.parquet.",
)


@dg.sensor(
    jobs=[process_slide_job, slide_manifest_job, reconcile_slides_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def slide_inbox_sensor(
    context: dg.SensorEvaluationContext, data_root: DataRoot, slide_inputs: SlideInputs
) -> dg.SensorResult | dg.SkipReason:
    """New or changed slides in the inbox (by content hash) -> partitions + runs; slides that
    left the manifest and the inbox -> partition deleted + a `reconcile_slides_job` run that
    moves their outputs aside.

    The cursor maps slide_id -> content hash and a cheap fingerprint (size, mtime); a slide is
    rehashed only when its fingerprint moved, and rerun only when its hash changed.
    """
    inbox = slide_inputs.inbox(data_root.layout)
    try:
        slides, problems = wiring.inbox_mxif_slides(inbox, slide_inputs.settle_seconds)
    except StorageError as exc:
        return dg.SkipReason(f"Inbox {inbox} not readable: {exc}")
    for problem in problems:
        context.log.warning(problem)
    changed, record = changed_slides(slides, json.loads(context.cursor) if context.cursor else {})
    cursor = json.dumps(record, sort_keys=True)
    entries = "entry" if len(problems) == 1 else "entries"
    skipped = f" Skipped {len(problems)} {entries}: {' '.join(problems)}" if problems else ""
    known = set(context.instance.get_dynamic_partitions(slide_partitions.name))
    plan = _departures(context, data_root, slide_inputs)
    new_ids = [s for s in changed if s not in known]  # manifest-only ones: slide_manifest
    departed = [r.slide_id for r in plan.retired]
    requests = [slide_partitions.build_add_request(new_ids)] if new_ids else []
    if departed:
        requests.append(slide_partitions.build_delete_request(
            [s for s in departed if s in known]))
    runs = [] if not departed else [dg.RunRequest(
        job_name=reconcile_slides_job.name,
        run_key=f"retire:{','.join(departed)}:{read_retired(data_root.layout).height}")]
    if not changed:
        return dg.SensorResult(
            run_requests=runs, dynamic_partitions_requests=requests, cursor=cursor,
            skip_reason=None if runs or requests
            else f"No new or changed slides in {inbox}.{skipped}")
    runs += [
        dg.RunRequest(
            job_name=process_slide_job.name,
            partition_key=slide_id,
            run_key=f"{slide_id}:{record[slide_id]['content_sha256']}",
            tags={"content_sha256": record[slide_id]["content_sha256"]},
        )
        for slide_id in changed
    ]
    changes = ",".join(f"{s}:{record[s]['content_sha256']}" for s in changed)
    manifest_key = hashlib.sha256(changes.encode()).hexdigest()[:32]
    runs.append(dg.RunRequest(job_name=slide_manifest_job.name, run_key=f"manifest:{manifest_key}"))
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=requests, cursor=cursor)


def _departures(context: dg.SensorEvaluationContext, data_root: DataRoot,
                slide_inputs: SlideInputs) -> SlideReconciliation:
    """What `reconcile_slides` would do now (nothing when the manifest cannot be read)."""
    try:
        return reconcile_slides(context.instance, data_root.layout, slide_inputs, dry_run=True)
    except (StorageError, OSError) as exc:
        context.log.warning(f"Slides not reconciled, the manifest is not readable: {exc}")
        return SlideReconciliation((), (), ())
