"""Slides that left the manifest: their outputs moved aside under `layout.retired_dir`.

A retired slide's stores, dataset partitions and patch-store group move to
`retired/<UTC time>_<slide_id>/` with the same relative paths they had under the data root, so
every cohort-wide reader (catalog views, patch store, fold split, training, report) only sees
the slides the manifest holds now, and a slide put back by mistake can be moved back by hand.
Each retirement appends one row to `retired/retired_slides.parquet`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from storage.atomic import atomic_path
from storage.fs import StoragePath, as_path, read_parquet
from storage.layout import DataLayout, is_slide_id, validate_slide_id
from storage.parquet_dataset import partition_path, slide_ids

RETIRED_COLUMNS = {"slide_id": pl.String, "retired_at": pl.String, "reason": pl.String,
                   "moved_to": pl.String, "n_paths": pl.Int64, "paths": pl.String}


@dataclass(frozen=True)
class RetiredSlide:
    """One slide moved aside: where its outputs went and why (times in UTC, ISO 8601)."""

    slide_id: str
    retired_at: str
    reason: str
    moved_to: str
    paths: tuple[str, ...]


def _datasets(layout: DataLayout) -> tuple[Path, ...]:
    return (layout.features_dir, layout.thresholds_dir, layout.labels_dir,
            layout.predictions_dir, layout.inference_dir)


def slide_outputs(layout: DataLayout, slide_id: str) -> list[StoragePath]:
    """Every per-slide output of `slide_id` that exists under the data root."""
    candidates = [layout.slide_zarr(slide_id), layout.mask_zarr(slide_id),
                  layout.vhe_zarr(slide_id)]
    candidates += [partition_path(d, slide_id).parent for d in _datasets(layout)]
    candidates += [layout.patch_store / validate_slide_id(slide_id),
                   layout.qupath_dir / f"{slide_id}.geojson",
                   layout.anndata_slide(slide_id), layout.ome_zarr_dir(slide_id)]
    return [p for p in candidates if p.exists()]


def _store_ids(folder: StoragePath) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.name.removesuffix(".zarr") for p in folder.iterdir()
            if p.name.endswith(".zarr") and not p.name.startswith(".")}


def slides_with_outputs(layout: DataLayout) -> set[str]:
    """Slide ids that have any per-slide output under the data root."""
    found = set().union(*(slide_ids(d) for d in _datasets(layout)))
    for folder in (layout.slide_zarr("x").parent, layout.mask_zarr("x").parent,
                   layout.vhe_zarr("x").parent):
        found |= _store_ids(folder)
    if (layout.patch_store / "zarr.json").exists():
        found |= {p.name for p in layout.patch_store.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "zarr.json").exists()}
    return {s for s in found if is_slide_id(s)}  # not a user's own file


def _relative(layout: DataLayout, path: StoragePath) -> str:
    return str(path)[len(str(layout.root).rstrip("/")):].lstrip("/")


def _move(source: StoragePath, target: StoragePath) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path):
        shutil.move(source, target)
    else:
        source.fs.mv(source.path, target.path, recursive=True)


def retire_slide(layout: DataLayout, slide_id: str, reason: str,
                 now: datetime | None = None) -> RetiredSlide:
    """Move every output of `slide_id` under `retired/<time>_<slide_id>/` and log it."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = when.strftime("%Y%m%dT%H%M%S.%fZ")
    folder = layout.retired_dir / f"{stamp}_{validate_slide_id(slide_id)}"
    moved = []
    for path in slide_outputs(layout, slide_id):
        _move(path, folder / _relative(layout, path))
        moved.append(_relative(layout, path))
    if _relative(layout, layout.patch_store / slide_id) in moved:  # keep it a readable store
        kept = folder / _relative(layout, layout.patch_store) / "zarr.json"
        kept.write_bytes((layout.patch_store / "zarr.json").read_bytes())
    record = RetiredSlide(slide_id, when.isoformat(), reason, str(folder), tuple(moved))
    append_retired(layout, [record])
    return record


def read_retired(layout: DataLayout) -> pl.DataFrame:
    """Every retirement so far, oldest first (an empty table when none)."""
    if not layout.retired_log.exists():
        return pl.DataFrame(schema=RETIRED_COLUMNS)
    return read_parquet(layout.retired_log)


def append_retired(layout: DataLayout, records: Iterable[RetiredSlide]) -> None:
    rows = [{"slide_id": r.slide_id, "retired_at": r.retired_at, "reason": r.reason,
             "moved_to": r.moved_to, "n_paths": len(r.paths), "paths": ", ".join(r.paths)}
            for r in records]
    if not rows:
        return
    frame = pl.concat([read_retired(layout),
                       pl.DataFrame(rows, schema=RETIRED_COLUMNS)])
    final = as_path(layout.retired_log)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(final) as tmp:
        frame.write_parquet(tmp)
