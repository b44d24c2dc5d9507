"""Keep the `slides` partitions and the per-slide outputs in step with the manifest and inbox.

`reconcile_slides` is the one place that does it: `slide_manifest` calls it on every
materialisation, the `reconcile_slides_job` runs just that from the UI, and a command line can
call it with an instance and a data root. A slide that is a partition, or has outputs on disk,
but is listed neither in the manifest nor in the inbox is retired: its partition is deleted and
its outputs move aside under `retired/` (see storage/retired_slides.py). New slides become
partitions. Nothing is retired when the manifest cannot be read: the error is raised instead.
"""


from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.partitions import he_slide_partitions, slide_partitions
from dagster_project.resources import DataRoot
from storage.layout import DataLayout
from storage.manifest import HE, MXIF
from storage.retired_slides import RetiredSlide, retire_slide, slides_with_outputs

DEPARTED = "not in the manifest nor the inbox any more"


@dataclass(frozen=True)
class SlidePlan:
    """What reconciling would do: partitions to add, slides to retire (sorted ids)."""

    add: tuple[str, ...]
    retire: tuple[str, ...]


@dataclass(frozen=True)
class SlideReconciliation:
    """What reconciling did: partitions added, slides retired with where their outputs went."""

    added: tuple[str, ...]
    retired: tuple[RetiredSlide, ...]
    slides: tuple[str, ...]

    def metadata(self) -> dict[str, dg.MetadataValue | int | str]:
        return {
            "new_partitions": len(self.added),
            "retired_slides": len(self.retired),
            "retired": dg.MetadataValue.json([
                {"slide_id": r.slide_id, "retired_at": r.retired_at, "reason": r.reason,
                 "moved_to": r.moved_to, "paths": list(r.paths)} for r in self.retired]),
        }


def plan_slides(current: Sequence[str], partitions: Sequence[str],
                with_outputs: Sequence[str] = ()) -> SlidePlan:
    """Partitions to add (current, not yet partitions) and slides to retire (partitions or
    slides with outputs that are not current)."""
    now = set(current)
    return SlidePlan(add=tuple(sorted(now - set(partitions))),
                     retire=tuple(sorted((set(partitions) | set(with_outputs)) - now)))


def reconcile_slides(
    instance: dg.DagsterInstance,
    layout: DataLayout,
    slide_inputs: SlideInputs | None = None,
    *,
    current: Sequence[str] | None = None,
    reason: str = DEPARTED,
    dry_run: bool = False,
    modality: str = MXIF,
) -> SlideReconciliation:
    """Add a `slides` partition for each slide of the manifest and the inbox, delete those of
    departed slides and move their outputs aside under `layout.retired_dir`.

    `current` (slide ids) defaults to what `slide_inputs` (default: `SlideInputs()`) lists now,
    not waiting for inbox files to settle, so a slide being copied in is never retired.
    `dry_run` only reports what would change (the `retired` records then move nothing).
    `modality` "he" does the same for the real H&E slides: `he_slides` partitions, outputs
    under `layout.he`.
    """
    partitions_def = he_slide_partitions if modality == HE else slide_partitions
    outputs = layout.he if modality == HE else layout
    if current is None:
        frame = (slide_inputs or SlideInputs()).collect(layout, settle_seconds=0.0)
        current = frame.filter(frame["modality"] == modality)["slide_id"].to_list()
    partitions = instance.get_dynamic_partitions(partitions_def.name)
    plan = plan_slides(current, partitions, sorted(slides_with_outputs(outputs)))
    if dry_run:
        return SlideReconciliation(plan.add, tuple(
            RetiredSlide(s, "", reason, "", ()) for s in plan.retire), tuple(sorted(current)))
    if plan.add:
        instance.add_dynamic_partitions(partitions_def.name, list(plan.add))
    retired = []
    for slide_id in plan.retire:
        if slide_id in partitions:
            instance.delete_dynamic_partition(partitions_def.name, slide_id)
        retired.append(retire_slide(outputs, slide_id, reason))
    return SlideReconciliation(plan.add, tuple(retired), tuple(sorted(current)))


class ReconcileConfig(dg.Config):
    """dry_run: only report the partitions that would be added and the slides retired."""

    dry_run: bool = False


@dg.op(description="Add partitions for new slides; retire slides that left the manifest.")
def reconcile_slides_op(context: dg.OpExecutionContext, config: ReconcileConfig,
                        data_root: DataRoot, slide_inputs: SlideInputs) -> dg.Output[int]:
    """The number of slides retired (or that would be, with dry_run), with what moved where."""
    done = reconcile_slides(context.instance, data_root.layout, slide_inputs,
                            dry_run=config.dry_run)
    he_done = reconcile_slides(context.instance, data_root.layout, slide_inputs,
                               dry_run=config.dry_run, modality=HE)
    done = SlideReconciliation(done.added + he_done.added, done.retired + he_done.retired,
                               done.slides + he_done.slides)
    for record in done.retired:
        context.log.warning(f"Slide {record.slide_id!r} left the manifest: "
                            + (f"outputs moved to {record.moved_to}." if record.moved_to
                               else "would be retired (dry run)."))
    return dg.Output(len(done.retired), metadata={
        "slides": len(done.slides), "dry_run": config.dry_run, **done.metadata()})


@dg.job(description="Reconcile the `slides` partitions with the manifest and the inbox: add "
                    "new slides, retire departed ones (partition deleted, outputs moved under "
                    "retired/).")
def reconcile_slides_job() -> None:
    reconcile_slides_op()
