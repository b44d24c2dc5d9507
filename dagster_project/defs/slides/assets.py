"""The slide manifest (unpartitioned) and each slide's ingested image (slide-partitioned)."""

import time
from pathlib import Path

import dagster as dg

from dagster_project.automation import MANIFEST, NEW_SLIDE
from dagster_project.defs.slides import wiring
from dagster_project.defs.slides.reconcile import reconcile_slides
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from pipelines.ingest import DEFAULT_TILE_PX, ReadParams
from pipelines.markdown import preview_markdown
from pipelines.stains import NUCLEAR_STAIN
from storage.manifest import HE

PREVIEW_COLUMNS = ["slide_id", "patient_id", "site", "condition", "mpp", "modality",
                   "content_sha256", "path"]
SLIDE_CHECK = "stains_canonical_with_dapi"


class SlideImageConfig(dg.Config):
    """tile_px: edge of the windows read and written at a time (multiples of the store's 1024 px
    chunks write each chunk once); force: re-ingest a slide whose store is already current."""

    tile_px: int = DEFAULT_TILE_PX
    force: bool = False


@dg.asset(group_name="slides", deps=["synthetic_cohort"], kinds={"parquet"},
          automation_condition=MANIFEST)
def slide_manifest(
    context: dg.AssetExecutionContext, data_root: DataRoot, slide_inputs: SlideInputs
) -> dg.MaterializeResult:
    """Every slide of the manifest and the inbox, validated and content-hashed."""
    started = time.perf_counter()
    layout = data_root.layout
    found, skipped = slide_inputs.collect_skipping(layout, settle_seconds=0.0)
    for problem in skipped:
        context.log.warning(f"Skipped an inbox entry: {problem}")
    out = wiring.write_hashed_manifest(layout, found)
    frame, ids, mxif = out.frame, out.slide_ids, out.mxif_ids
    done = reconcile_slides(context.instance, layout, current=mxif)
    he_done = reconcile_slides(context.instance, layout, current=out.he_ids,
                               modality=HE)  # real H&E slides: the he_slides partitions
    for record in done.retired + he_done.retired:
        context.log.warning(f"Slide {record.slide_id!r} left the manifest: partition deleted, "
                            f"outputs moved to {record.moved_to}.")
    return dg.MaterializeResult(
        metadata={
            "slides": len(ids),
            "patients": frame["patient_id"].n_unique(),
            **done.metadata(),
            "he_slides": len(ids) - len(mxif),
            "without_mpp": frame["mpp"].null_count(),
            "skipped": dg.MetadataValue.md("\n".join(f"- {p}" for p in skipped) or "none"),
            "n_skipped": len(skipped),
            "path": dg.MetadataValue.path(str(layout.manifest_parquet)),
            "seconds": round(time.perf_counter() - started, 2),
            "preview": dg.MetadataValue.md(preview_markdown(frame, PREVIEW_COLUMNS)),
        }
    )


@dg.asset(
    group_name="slides",
    partitions_def=slide_partitions,
    deps=[slide_manifest],
    kinds={"zarr"},
    check_specs=[dg.AssetCheckSpec(SLIDE_CHECK, asset="slide_image")],
    automation_condition=NEW_SLIDE,
)
def slide_image(
    context: dg.AssetExecutionContext,
    config: SlideImageConfig,
    data_root: DataRoot,
    slide_inputs: SlideInputs,
) -> dg.MaterializeResult:
    """The partition's slide streamed into `layout.slide_zarr(slide_id)` window by window."""
    slide_id, layout = context.partition_key, data_root.layout
    row = wiring.listed_row(layout, slide_id) or _row_from_inputs(slide_inputs, layout, slide_id)
    params = ReadParams(config.tile_px, tuple(slide_inputs.required_stains),
                        stain_aliases=slide_inputs.aliases(layout))
    out = wiring.ingest(layout, slide_id, row, params, config.force)
    info = out.info
    return dg.MaterializeResult(
        data_version=dg.DataVersion(out.data_version),
        metadata={
            "stains": ", ".join(info.stains),
            "n_stains": len(info.stains),
            "shape": str((len(info.stains), info.height_px, info.width_px)),
            "mpp": info.mpp,
            "mpp_source": out.mpp_source,
            "format": out.format,
            "mb_written": round(out.mb_written, 2),
            "seconds": round(out.seconds, 2),
            "mb_per_s": out.mb_per_s,
            "reused_unchanged_store": out.reused,
            "content_sha256": out.content_sha256,
            "path": dg.MetadataValue.path(str(out.path)),
        },
        check_results=[check_slide_store(out.path)],
    )


def _row_from_inputs(slide_inputs: SlideInputs, layout, slide_id: str) -> dict:
    """A slide the manifest Parquet does not list yet (just found by the inbox sensor)."""
    frame, _ = slide_inputs.collect_skipping(layout, settle_seconds=0.0)
    rows = frame.filter(frame["slide_id"] == slide_id).to_dicts()
    if not rows:
        raise dg.Failure(
            f"Slide {slide_id!r} is in neither {layout.manifest_parquet} nor the slide inputs; "
            "materialise slide_manifest (or launch reconcile_slides_job) to retire the stale "
            "partition and move its outputs aside."
        )
    return rows[0]


def check_slide_store(path: Path) -> dg.AssetCheckResult:
    """The written store has canonical stain names, the nuclear stain DAPI and pixels."""
    found = wiring.check_store(path)
    info, odd = found.info, found.non_canonical
    return dg.AssetCheckResult(
        check_name=SLIDE_CHECK,
        passed=not odd and found.has_nuclear and found.non_empty,
        # No DAPI is a warning: a panel may segment on other nuclear stains (HH3, Nuc), and
        # nucleus_mask refuses a slide that lacks the stains it is configured with.
        severity=dg.AssetCheckSeverity.ERROR if odd or not found.non_empty
        else dg.AssetCheckSeverity.WARN,
        metadata={
            "non_canonical_stains": ", ".join(odd) or "none",
            "has_dapi": found.has_nuclear,
            "shape": str((len(info.stains), info.height_px, info.width_px)),
        },
        description=None if found.has_nuclear else (
            f"Slide {info.slide_id!r} has no {NUCLEAR_STAIN}; segment it on the stains it has "
            "(nucleus_mask's nuclear_stains), or add an alias in pipelines/stains.py if the "
            "nuclear stain has another name."
        ),
    )
