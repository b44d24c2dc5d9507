"""Glue of the slides stage: read through storage/, call pipelines/, write through storage/.
No science here, and no Dagster: a notebook can call every function with a DataLayout. The
partitions' bookkeeping (which needs a Dagster instance) lives in reconcile.py."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.ingest import ReadParams, describe, open_slide_source
from pipelines.stains import NUCLEAR_STAIN, canonical_stain
from storage.fs import as_path, local_copy
from storage.layout import DataLayout
from storage.manifest import MXIF, inbox_slides, manifest_row, with_content_hashes, write_manifest
from storage.slide_ingest import folder_bytes, is_current, write_slide
from storage.slide_sources import content_sha256
from storage.slide_store import SlideInfo, open_slide


@dataclass(frozen=True)
class ManifestOutcome:
    frame: pl.DataFrame
    slide_ids: list[str]
    mxif_ids: list[str]

    @property
    def he_ids(self) -> list[str]:
        """The real H&E slides (the he_slides partitions), sorted."""
        return sorted(set(self.slide_ids) - set(self.mxif_ids))


def write_hashed_manifest(layout: DataLayout, found: pl.DataFrame) -> ManifestOutcome:
    """The collected slides with their content hashes, written to `layout.manifest_parquet`."""
    frame = with_content_hashes(found)
    write_manifest(frame, layout.manifest_parquet)
    mxif = frame.filter(frame["modality"] == MXIF)["slide_id"].to_list()
    return ManifestOutcome(frame, frame["slide_id"].to_list(), mxif)


def inbox_mxif_slides(inbox: Path, settle_seconds: float) -> tuple[dict[str, Path], list[str]]:
    """The inbox's MxIF slides (slide_id -> path; H&E rows are left to the manifest's he_slides
    chain) and the entries skipped, one sentence each. Raises StorageError when the inbox
    cannot be read."""
    frame, problems = inbox_slides(inbox, settle_seconds=settle_seconds)
    frame = frame.filter(frame["modality"] == MXIF)
    slides = dict(zip(frame["slide_id"].to_list(), map(Path, frame["path"].to_list()), strict=True))
    return slides, problems


def listed_row(layout: DataLayout, slide_id: str) -> dict[str, Any] | None:
    """The slide's row of the manifest Parquet; None when absent or its file is gone."""
    row = manifest_row(layout.manifest_parquet, slide_id)
    return None if row is None or not as_path(row["path"]).exists() else row


def info_mb(info: SlideInfo) -> float:
    """Uncompressed size of a slide in MB."""
    return len(info.stains) * info.height_px * info.width_px * np.dtype(info.dtype).itemsize / 1e6


@dataclass(frozen=True)
class IngestOutcome:
    info: SlideInfo
    content_sha256: str
    reused: bool
    seconds: float
    mb_written: float
    mpp_source: str
    format: str
    path: Path

    @property
    def data_version(self) -> str:
        """Source content plus layout: re-ingesting the same file the same way leaves every
        downstream stage up to date."""
        return hashlib.sha256(f"{self.content_sha256}|{self.info!r}".encode()).hexdigest()[:24]

    @property
    def mb_per_s(self) -> float:
        return round(info_mb(self.info) / self.seconds, 1) \
            if not self.reused and self.seconds else 0.0


def ingest(layout: DataLayout, slide_id: str, row: dict[str, Any], params: ReadParams,
           force: bool) -> IngestOutcome:
    """Stream the slide's file into `layout.slide_zarr(slide_id)` window by window, unless
    the store already holds the same content the same way (and `force` is off)."""
    final = layout.slide_zarr(slide_id)
    digest = content_sha256(as_path(row["path"]))
    started = time.perf_counter()
    with local_copy(row["path"]) as local, \
            open_slide_source(local, mpp=row["mpp"], params=params) as source:
        info = SlideInfo(slide_id, source.stains, source.mpp, source.height_px,
                         source.width_px, str(source.dtype))
        reused = not force and is_current(final, info, digest)
        if not reused:
            origin = {**describe(source), "path": str(as_path(row["path"]))}
            write_slide(final, info, source.windows(), {**origin, "content_sha256": digest})
    seconds = time.perf_counter() - started
    mb_written = 0.0 if reused else folder_bytes(final) / 1e6
    return IngestOutcome(info, digest, reused, seconds, mb_written, source.mpp_source,
                         source.format, final)


@dataclass(frozen=True)
class StoreCheck:
    """What the written slide store holds: stain names that are not canonical, the nuclear
    stain, and whether it has pixels at all."""

    info: SlideInfo
    non_canonical: list[str]
    has_nuclear: bool
    non_empty: bool


def check_store(path: Path) -> StoreCheck:
    info = open_slide(path).info
    return StoreCheck(info, [s for s in info.stains if canonical_stain(s) != s],
                      NUCLEAR_STAIN in info.stains,
                      info.height_px > 0 and info.width_px > 0 and len(info.stains) > 0)
