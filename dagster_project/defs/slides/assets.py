"""The slide manifest (unpartitioned) and each slide's ingested image (slide-partitioned)."""

import hashlib
import time
from pathlib import Path

import dagster as dg
import numpy as np

from dagster_project.automation import MANIFEST, NEW_SLIDE
from dagster_project.defs.slides.reconcile import reconcile_slides
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from pipelines.ingest import DEFAULT_TILE_PX, ReadParams, describe, open_slide_source
from pipelines.markdown import preview_markdown
from pipelines.stains import NUCLEAR_STAIN, canonical_stain
from storage.fs import as_path, local_copy
from storage.manifest import (
    HE,
    MXIF,
    manifest_row,
    with_content_hashes,
    write_manifest,
)
from storage.slide_ingest import folder_bytes, is_current, write_slide
from storage.slide_sources import content_sha256
from storage.slide_store import SlideInfo, open_slide

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
    frame = with_content_hashes(found)
    write_manifest(frame, layout.manifest_parquet)
    ids = frame["slide_id"].to_list()
    mxif = frame.filter(frame["modality"] == MXIF)["slide_id"].to_list()
    done = reconcile_slides(context.instance, layout, current=mxif)
    he_done = reconcile_slides(context.instance, layout, current=sorted(set(ids) - set(mxif)),
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
    row = manifest_row(layout.manifest_parquet, slide_id)
    if row is None or not as_path(row["path"]).exists():
        row = _row_from_inputs(slide_inputs, layout, slide_id)
    final = layout.slide_zarr(slide_id)
    digest = content_sha256(as_path(row["path"]))
    params = ReadParams(config.tile_px, tuple(slide_inputs.required_stains),
                        stain_aliases=slide_inputs.aliases(layout))
    started = time.perf_counter()
    with local_copy(row["path"]) as local, \
            open_slide_source(local, mpp=row["mpp"], params=params) as source:
        info = SlideInfo(slide_id, source.stains, source.mpp, source.height_px,
                         source.width_px, str(source.dtype))
        reused = not config.force and is_current(final, info, digest)
        if not reused:
            origin = {**describe(source), "path": str(as_path(row["path"]))}
            write_slide(final, info, source.windows(), {**origin, "content_sha256": digest})
    seconds = time.perf_counter() - started
    mb_written = 0.0 if reused else folder_bytes(final) / 1e6
    return dg.MaterializeResult(
        data_version=store_version(info, digest),
        metadata={
            "stains": ", ".join(info.stains),
            "n_stains": len(info.stains),
            "shape": str((len(info.stains), info.height_px, info.width_px)),
            "mpp": info.mpp,
            "mpp_source": source.mpp_source,
            "format": source.format,
            "mb_written": round(mb_written, 2),
            "seconds": round(seconds, 2),
            "mb_per_s": round(info_mb(info) / seconds, 1) if not reused and seconds else 0.0,
            "reused_unchanged_store": reused,
            "content_sha256": digest,
            "path": dg.MetadataValue.path(str(final)),
        },
        check_results=[check_slide_store(final)],
    )


def store_version(info: SlideInfo, digest: str) -> dg.DataVersion:
    """The slide store's data version: source content plus layout, so re-ingesting the same
    file the same way leaves every downstream stage up to date."""
    return dg.DataVersion(hashlib.sha256(f"{digest}|{info!r}".encode()).hexdigest()[:24])


def info_mb(info: SlideInfo) -> float:
    """Uncompressed size of a slide in MB."""
    return len(info.stains) * info.height_px * info.width_px * np.dtype(info.dtype).itemsize / 1e6


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
    info = open_slide(path).info
    odd = [s for s in info.stains if canonical_stain(s) != s]
    has_nuclear = NUCLEAR_STAIN in info.stains
    non_empty = info.height_px > 0 and info.width_px > 0 and len(info.stains) > 0
    return dg.AssetCheckResult(
        check_name=SLIDE_CHECK,
        passed=not odd and has_nuclear and non_empty,
        # No DAPI is a warning: a panel may segment on other nuclear stains (HH3, Nuc), and
        # nucleus_mask refuses a slide that lacks the stains it is configured with.
        severity=dg.AssetCheckSeverity.ERROR if odd or not non_empty
        else dg.AssetCheckSeverity.WARN,
        metadata={
            "non_canonical_stains": ", ".join(odd) or "none",
            "has_dapi": has_nuclear,
            "shape": str((len(info.stains), info.height_px, info.width_px)),
        },
        description=None if has_nuclear else (
            f"Slide {info.slide_id!r} has no {NUCLEAR_STAIN}; segment it on the stains it has "
            "(nucleus_mask's nuclear_stains), or add an alias in pipelines/stains.py if the "
            "nuclear stain has another name."
        ),
    )
