"""The manual thresholds CSV a user keeps: one row per slide and stain.

Columns: `slide_id, stain, threshold, set_by, note` (`set_by` and `note` may be empty or left out).
A nucleus is positive for a stain when its mean intensity is greater than `threshold`, in the
slide's own intensity units. Lines starting with `#` are comments. Stain names are kept as the
user wrote them; spelling them canonically is the science layer's job.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection
from pathlib import Path

import polars as pl

from storage.atomic import atomic_write_text
from storage.errors import SlideIdError, StorageError
from storage.fs import as_path
from storage.layout import validate_slide_id

REQUIRED_COLUMNS: tuple[str, ...] = ("slide_id", "stain", "threshold")
OPTIONAL_COLUMNS: tuple[str, ...] = ("set_by", "note")
COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)

SCHEMA: dict[str, pl.DataType] = {
    "slide_id": pl.Utf8(),
    "stain": pl.Utf8(),
    "threshold": pl.Float64(),
    "set_by": pl.Utf8(),
    "note": pl.Utf8(),
    "line": pl.Int64(),
}


class ThresholdsCsvError(StorageError):
    """The manual thresholds CSV cannot be read; the message names the file and line."""


def empty_manual_thresholds() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def _known_slides_text(known: Collection[str], limit: int = 20) -> str:
    names = sorted(known)
    shown = ", ".join(names[:limit]) or "none yet"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def parse_thresholds_csv(
    text: str, *, source: str = "thresholds CSV", known_slides: Collection[str] | None = None
) -> pl.DataFrame:
    """Rows of a manual thresholds CSV (raw stain names), with the 1-based line they came from.

    With `known_slides`, a row for any other slide is refused (a typo would otherwise be
    dropped silently). A negative or non-finite threshold is always refused.
    """
    lines = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        return empty_manual_thresholds()
    reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
    rows = list(reader)
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        raise ThresholdsCsvError(
            f"{source}, line {lines[0][0]}: the header must name {', '.join(COLUMNS)} "
            f"(set_by and note are optional); missing {missing or 'none'}, "
            f"unknown {unknown or 'none'}."
        )
    out: dict[str, list] = {c: [] for c in SCHEMA}
    seen: dict[tuple[str, str], int] = {}
    for (number, line), values in zip(lines[1:], rows[1:], strict=True):
        if len(values) != len(header):
            raise ThresholdsCsvError(
                f"{source}, line {number}: expected {len(header)} fields, found {len(values)}; "
                "quote a note that contains commas."
            )
        record = {c: v.strip() for c, v in zip(header, values, strict=True)}
        try:
            slide_id = validate_slide_id(record["slide_id"])
        except SlideIdError as error:
            raise ThresholdsCsvError(f"{source}, line {number}: {error}") from None
        if known_slides is not None and slide_id not in known_slides:
            raise ThresholdsCsvError(
                f"{source}, line {number} ({line.strip()!r}): slide {slide_id!r} is not in the "
                f"cohort (known slides: {_known_slides_text(known_slides)}); fix the slide id "
                "or remove the line."
            )
        stain = record["stain"]
        if not stain:
            raise ThresholdsCsvError(f"{source}, line {number}: the stain is empty.")
        try:
            threshold = float(record["threshold"])
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            raise ThresholdsCsvError(
                f"{source}, line {number}: threshold {record['threshold']!r} for slide "
                f"{slide_id!r}, stain {stain!r} is not a finite number."
            )
        if threshold < 0:
            raise ThresholdsCsvError(
                f"{source}, line {number} ({line.strip()!r}): threshold {threshold:g} for slide "
                f"{slide_id!r}, stain {stain!r} is negative; intensities are >= 0, so give a "
                "threshold of 0 or more."
            )
        key = (slide_id, stain.lower())
        if key in seen:
            raise ThresholdsCsvError(
                f"{source}, lines {seen[key]} and {number}: slide {slide_id!r}, stain {stain!r} "
                "has two thresholds; keep one."
            )
        seen[key] = number
        values_by_column = {
            "slide_id": slide_id, "stain": stain, "threshold": threshold,
            "set_by": record.get("set_by", ""), "note": record.get("note", ""), "line": number,
        }
        for column, value in values_by_column.items():
            out[column].append(value)
    return pl.DataFrame(out, schema=SCHEMA)


def read_thresholds_csv(path: Path, known_slides: Collection[str] | None = None) -> pl.DataFrame:
    """The manual thresholds in `path`; an absent file means no manual thresholds (all auto).

    `known_slides`: the cohort's slide ids; a row for another slide is an error.
    """
    path = as_path(path)
    if not path.exists():
        return empty_manual_thresholds()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ThresholdsCsvError(f"Cannot read the thresholds CSV {path}: {error}.") from None
    return parse_thresholds_csv(text, source=str(path), known_slides=known_slides)


def write_thresholds_csv(path: Path, rows: pl.DataFrame) -> Path:
    """Write rows (slide_id, stain, threshold, set_by, note) as a thresholds CSV, atomically.

    Used to hand a person the automatic suggestions as a starting point they can edit.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows.select(COLUMNS).iter_rows():
        slide_id, stain, threshold, set_by, note = row
        writer.writerow([slide_id, stain, repr(float(threshold)), set_by or "", note or ""])
    return atomic_write_text(path, buffer.getvalue())
