"""The per-slide thresholds table: manual rows from the CSV where it has them, automatic ones
elsewhere, and the short hashes (`threshold_version`, manual versions) labels carry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import polars as pl

from pipelines.errors import StainError
from pipelines.stains import canonical_stain, stain_key
from pipelines.thresholds.auto import auto_threshold
from pipelines.thresholds.params import MEAN_PREFIX, AutoThresholdParams

THRESHOLD_SCHEMA: dict[str, pl.DataType] = {
    "slide_id": pl.Utf8(),
    "stain": pl.Utf8(),
    "stain_key": pl.Utf8(),
    "threshold": pl.Float64(),
    "source": pl.Utf8(),
    "method": pl.Utf8(),
    "set_by": pl.Utf8(),
    "note": pl.Utf8(),
    "threshold_version": pl.Utf8(),
}


def feature_stains(features: pl.DataFrame) -> dict[str, str]:
    """stain_key -> canonical stain for every `mean_<stain_key>` column of a feature frame."""
    out: dict[str, str] = {}
    for column in features.columns:
        if not column.startswith(MEAN_PREFIX):
            continue
        key = column[len(MEAN_PREFIX):]
        stain = canonical_stain(key)
        if stain_key(stain) != key:
            raise StainError(
                f"Feature column {column!r} does not name a stain by its key "
                f"(expected mean_{stain_key(stain)})."
            )
        out[key] = stain
    return out


def manual_for_slide(manual: pl.DataFrame, slide_id: str) -> pl.DataFrame:
    """The manual rows of one slide with canonical stain names and keys added."""
    rows = manual.filter(pl.col("slide_id") == slide_id)
    stains = [canonical_stain(s) for s in rows["stain"].to_list()]
    keys = [stain_key(s) for s in stains]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise StainError(
            f"Slide {slide_id!r}: the thresholds CSV sets {dupes} more than once "
            "(after spelling stains canonically); keep one row per stain."
        )
    return rows.with_columns(pl.Series("stain", stains), pl.Series("stain_key", keys))


def threshold_version(rows: pl.DataFrame) -> str:
    """Short hash of the thresholds that decide labels: (stain_key, threshold, source, method)."""
    digest = hashlib.sha256()
    for key, value, source, method in sorted(
        rows.select("stain_key", "threshold", "source", "method").iter_rows()
    ):
        digest.update(f"{key}\t{float(value)!r}\t{source}\t{method}\n".encode())
    return digest.hexdigest()[:12]


def manual_versions(manual: pl.DataFrame, slide_ids: Sequence[str]) -> dict[str, str]:
    """Per slide, a short hash of its manual rows (canonical stain, threshold, set_by, note).

    Editing the CSV changes the hash of exactly the slides whose rows changed, so only those
    slides need new thresholds and labels. A slide without manual rows hashes to "auto".
    """
    out: dict[str, str] = {}
    for slide_id in slide_ids:
        rows = manual_for_slide(manual, slide_id)
        if rows.height == 0:
            out[slide_id] = "auto"
            continue
        digest = hashlib.sha256()
        for key, value, set_by, note in sorted(
            rows.select("stain_key", "threshold", "set_by", "note").iter_rows()
        ):
            digest.update(f"{key}\t{float(value)!r}\t{set_by}\t{note}\n".encode())
        out[slide_id] = digest.hexdigest()[:12]
    return out


def slide_thresholds(
    slide_id: str,
    features: pl.DataFrame,
    manual: pl.DataFrame,
    params: AutoThresholdParams,
) -> pl.DataFrame:
    """One row per stain of the slide: manual where the CSV has it, automatic elsewhere.

    `features` is the slide's nucleus_features (mean_<stain_key> columns); `manual` holds the
    CSV rows (any slides; only this slide's are used). Columns as in THRESHOLD_SCHEMA.
    """
    stains = feature_stains(features)
    if not stains:
        raise StainError(f"Slide {slide_id!r}: its features have no mean_<stain> columns.")
    mine = manual_for_slide(manual, slide_id)
    unknown = sorted(
        row["stain"] for row in mine.iter_rows(named=True) if row["stain_key"] not in stains
    )
    if unknown:
        raise StainError(
            f"Slide {slide_id!r}: the thresholds CSV sets stain(s) {unknown} that the slide does "
            f"not have (it has {sorted(stains.values())}); fix the stain names in the CSV."
        )
    by_key = {row["stain_key"]: row for row in mine.iter_rows(named=True)}
    records = []
    for key, stain in sorted(stains.items()):
        if key in by_key:
            row = by_key[key]
            records.append((stain, key, float(row["threshold"]), "manual", "manual",
                            row["set_by"] or "", row["note"] or ""))
            continue
        found = auto_threshold(features[MEAN_PREFIX + key].to_numpy(), params)
        records.append((stain, key, found.threshold, "auto", found.method, "", found.note))
    frame = pl.DataFrame(
        records, schema=["stain", "stain_key", "threshold", "source", "method", "set_by", "note"],
        orient="row",
    )
    version = threshold_version(frame)
    return frame.with_columns(
        pl.lit(slide_id).alias("slide_id"), pl.lit(version).alias("threshold_version")
    ).select(list(THRESHOLD_SCHEMA)).cast(THRESHOLD_SCHEMA)
