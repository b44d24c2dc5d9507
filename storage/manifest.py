"""The slide manifest: which slides exist, whose they are, where their files are.

Input manifests are CSV or Parquet with at least `slide_id` and `path` (relative to the
manifest's folder, or absolute), optionally `patient_id`, `site`, `condition` and `mpp`
(µm per pixel) and `modality` (`mxif`, the default, or `he` for a real H&E slide, which
goes through the H&E chain and never into labels or training). Reading one validates it:
slide ids that are unsafe (`../x`, `a/b`) or listed twice, paths listed twice or missing
on disk, and an `mpp` outside `storage.pixel_size`'s range are refused with the file and row
named. A slide with no `patient_id` counts as its own patient.

The combined, hashed manifest is written to `layout.manifest_parquet` with the columns of
`MANIFEST_SCHEMA`, `path` absolute.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import polars as pl

from storage.atomic import atomic_path
from storage.errors import SlideIdError, StorageError
from storage.fs import StoragePath, as_path, is_remote, read_csv, read_parquet
from storage.layout import validate_slide_id
from storage.pixel_size import MPP_RANGE_UM, mpp_problem
from storage.slide_sources import INBOX_MANIFEST, content_sha256, discover_inbox, slide_id_for

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "slide_id": pl.Utf8(),
    "patient_id": pl.Utf8(),
    "site": pl.Utf8(),
    "condition": pl.Utf8(),
    "path": pl.Utf8(),
    "mpp": pl.Float64(),
    "modality": pl.Utf8(),
    "content_sha256": pl.Utf8(),
}
SOURCE_COLUMNS: tuple[str, ...] = tuple(c for c in MANIFEST_SCHEMA if c != "content_sha256")
REQUIRED_COLUMNS = ("slide_id", "path")
# The values `site` and `condition` may take (empty: not known yet, refused only by fold_split).
SITES: tuple[str, ...] = ("ascending_colon", "terminal_ileum")
CONDITIONS: tuple[str, ...] = ("normal", "inactive_crohns", "active_crohns")
# What kind of slide a row is: multiplexed immunofluorescence, or a real (RGB) H&E slide.
MXIF, HE = "mxif", "he"
MODALITIES: tuple[str, ...] = (MXIF, HE)


class ManifestError(StorageError):
    """A manifest that cannot be used: missing columns or files, bad values, clashing rows."""


def _row_label(manifest: Path | str, index: int) -> str:
    """Where a row sits: CSV line numbers count the header as line 1."""
    if str(manifest).endswith(".csv"):
        return f"{manifest} line {index + 2}"
    return f"{manifest} row {index}"


def _read_table(path: Path) -> pl.DataFrame:
    if path.suffix.lower() != ".parquet":
        header = _first_line(path)
        if header.count(";") > header.count(","):
            raise ManifestError(
                f"{path}: the header {header.strip()!r} is separated by semicolons; write the "
                "manifest with commas between columns (and '.' as the decimal point, e.g. 0.32)."
            )
    try:
        if path.suffix.lower() == ".parquet":
            return read_parquet(path)
        # Every column as text first: slide ids such as "007" must not become integers.
        return read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    except Exception as exc:
        raise ManifestError(
            f"{path}: cannot read the manifest ({type(exc).__name__}: {exc})."
        ) from exc


def _first_line(path: Path) -> str:
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace") as handle:
            return handle.readline()
    except OSError:
        return ""


def read_manifest(path: str | Path, *, require_files: bool = True) -> pl.DataFrame:
    """Read and validate a manifest (CSV or Parquet); returns `SOURCE_COLUMNS`, `path` absolute."""
    path = _absolute_root(path)
    if not path.is_file():
        raise ManifestError(f"No manifest at {path}: write one (columns slide_id, path, mpp, ...).")
    table = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {missing}; a manifest needs slide_id and path "
            "(optional: patient_id, site, condition, mpp)."
        )
    return _normalise(table, path, base_dir=path.parent, require_files=require_files)


def _normalise(
    table: pl.DataFrame, origin: Path, base_dir: Path, require_files: bool
) -> pl.DataFrame:
    columns = {}
    for name in SOURCE_COLUMNS:
        if name in table.columns:
            columns[name] = table[name]
        else:
            columns[name] = pl.Series(name, [None] * table.height, dtype=MANIFEST_SCHEMA[name])
    text = {n: columns[n].cast(pl.Utf8).str.strip_chars() for n in SOURCE_COLUMNS if n != "mpp"}
    text = {n: s.replace("", None) for n, s in text.items()}
    text["modality"] = text["modality"].str.to_lowercase()
    mpp = columns["mpp"].cast(pl.Utf8).str.strip_chars().replace("", None)
    mpp_values = mpp.cast(pl.Float64, strict=False)
    rows = zip(text["slide_id"].to_list(), mpp.to_list(), mpp_values.to_list(), strict=True)
    for index, (slide_id, raw, value) in enumerate(rows):
        problem = None if raw is None else mpp_problem(value)
        if problem:
            low, high = MPP_RANGE_UM
            raise ManifestError(
                f"{_row_label(origin, index)}: mpp {raw!r} is not a pixel size for slide "
                f"{slide_id!r} ({problem}). Give µm per pixel, between {low:g} and {high:g} "
                "(e.g. 0.32), or leave it empty."
            )
    frame = pl.DataFrame({**text, "mpp": mpp_values}).select(SOURCE_COLUMNS)
    for index, (slide_id, slide_path) in enumerate(frame.select("slide_id", "path").iter_rows()):
        if slide_id is None or slide_path is None:
            raise ManifestError(
                f"{_row_label(origin, index)}: slide_id and path must both be given."
            )
        try:
            validate_slide_id(slide_id)
        except SlideIdError as exc:
            raise SlideIdError(f"{_row_label(origin, index)}: {exc}") from exc
    for column, allowed in (("site", SITES), ("condition", CONDITIONS), ("modality", MODALITIES)):
        for index, (slide_id, value) in enumerate(frame.select("slide_id", column).iter_rows()):
            if value is not None and value not in allowed:
                raise ManifestError(
                    f"{_row_label(origin, index)}: slide {slide_id!r} has {column} {value!r}; "
                    f"use one of {list(allowed)} or leave it empty."
                )
    absolute = [str(_absolute(base_dir, p)) for p in frame["path"]]
    frame = frame.with_columns(
        pl.Series("path", absolute, dtype=pl.Utf8),
        pl.coalesce("patient_id", "slide_id").alias("patient_id"),
        pl.col("modality").fill_null(MXIF),
    )
    check_unique(frame, origin)
    if require_files:
        pairs = frame.select("slide_id", "path").iter_rows()
        for index, (slide_id, slide_path) in enumerate(pairs):
            if not as_path(slide_path).exists():
                raise ManifestError(
                    f"{_row_label(origin, index)}: slide {slide_id!r}: no file or folder at "
                    f"{slide_path}; fix the path (relative to {base_dir}) or copy the slide there."
                )
    return frame


def _absolute_root(path: str | Path) -> StoragePath:
    """A local path made absolute; a URL (object storage) as it is."""
    path = as_path(path)
    return path.absolute() if isinstance(path, Path) else path


def _absolute(base_dir: StoragePath, value: str) -> StoragePath:
    if is_remote(value) or not isinstance(base_dir, Path):
        return as_path(value) if is_remote(value) or value.startswith("/") else base_dir / value
    candidate = Path(value).expanduser()
    return Path(os.path.normpath(candidate if candidate.is_absolute() else base_dir / candidate))


def check_unique(frame: pl.DataFrame, origin: Path | str) -> None:
    """Refuse a slide id or a slide path listed twice, naming both rows."""
    for column, what in (("slide_id", "slide id"), ("path", "slide file")):
        seen: dict[str, int] = {}
        for index, value in enumerate(frame[column].to_list()):
            if value in seen:
                error = SlideIdError if column == "slide_id" else ManifestError
                raise error(
                    f"{origin}: {what} {value!r} is listed twice "
                    f"({_row_label(origin, seen[value])} and {_row_label(origin, index)}); "
                    "keep one row per slide."
                )
            seen[value] = index
    check_case_collisions(frame["slide_id"].to_list(), lambda i: _row_label(origin, i))


def check_case_collisions(slide_ids: Sequence[str], where: Callable[[int], str]) -> None:
    """Refuse slide ids that differ only in case: their folders collide on macOS and Windows."""
    seen: dict[str, int] = {}
    for index, slide_id in enumerate(slide_ids):
        folded = slide_id.casefold()
        if folded in seen and slide_ids[seen[folded]] != slide_id:
            first = seen[folded]
            raise SlideIdError(
                f"slide ids {slide_ids[first]!r} ({where(first)}) and {slide_id!r} "
                f"({where(index)}) differ only in case; their folders would collide on macOS "
                "and Windows: rename one."
            )
        seen.setdefault(folded, index)


def inbox_slides(
    inbox_dir: str | Path, settle_seconds: float = 0.0
) -> tuple[pl.DataFrame, list[str]]:
    """The slides in an inbox folder and the problems of entries that could not be listed.

    Rows of the inbox's optional manifest.csv come first; every other slide entry gets an id
    from its name (patient_id = slide_id, no site, condition or mpp). An entry whose name makes
    no valid slide id is left out and described in the problems.
    """
    inbox_dir = _absolute_root(inbox_dir)
    listed = _empty_sources()
    if (inbox_dir / INBOX_MANIFEST).is_file():
        listed = read_manifest(inbox_dir / INBOX_MANIFEST)
    listed_paths = set(listed["path"].to_list())
    rows, problems = [], []
    for entry in discover_inbox(inbox_dir, settle_seconds=settle_seconds):
        if str(entry) in listed_paths:
            continue
        slide_id = slide_id_for(entry)
        try:
            validate_slide_id(slide_id)
        except SlideIdError as exc:
            problems.append(
                f"{entry}: the name gives slide id {slide_id!r}, which is not allowed; rename it "
                f"or list it in {inbox_dir / INBOX_MANIFEST} with a valid slide_id. ({exc})"
            )
            continue
        rows.append({"slide_id": slide_id, "patient_id": slide_id, "path": str(entry),
                     "modality": MXIF})
    found = pl.DataFrame(rows, schema={c: MANIFEST_SCHEMA[c] for c in SOURCE_COLUMNS})
    frame = pl.concat([listed, found], how="vertical")
    check_unique(frame, inbox_dir)
    return frame, problems


def inbox_manifest(inbox_dir: str | Path, settle_seconds: float = 0.0) -> pl.DataFrame:
    """`inbox_slides`, refusing the inbox if any entry could not be listed."""
    frame, problems = inbox_slides(inbox_dir, settle_seconds)
    if problems:
        raise SlideIdError(problems[0])
    return frame


def _empty_sources() -> pl.DataFrame:
    return pl.DataFrame(schema={c: MANIFEST_SCHEMA[c] for c in SOURCE_COLUMNS})


def combine_manifests(parts: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Stack manifests from several places (name -> frame), refusing a slide listed in two."""
    frames = [f.select(SOURCE_COLUMNS) for f in parts.values()]
    if not frames:
        return _empty_sources()
    origin = {}
    for name, frame in parts.items():
        for column in ("slide_id", "path"):
            for value in frame[column].to_list():
                key = (column, value)
                if key in origin and origin[key] != name:
                    what = "slide id" if column == "slide_id" else "slide file"
                    error = SlideIdError if column == "slide_id" else ManifestError
                    raise error(
                        f"{what} {value!r} is listed both in {origin[key]} and in {name}; "
                        "keep it in one of them."
                    )
                origin[key] = name
    owners = [(name, s) for name, f in parts.items() for s in f["slide_id"].to_list()]
    check_case_collisions([s for _, s in owners], lambda i: owners[i][0])
    return pl.concat(frames, how="vertical").sort("slide_id")


def with_content_hashes(
    frame: pl.DataFrame, hasher: Callable[[Path], str] = content_sha256
) -> pl.DataFrame:
    """Add `content_sha256` (see storage.slide_sources) for every row's slide."""
    digests = [hasher(as_path(p)) for p in frame["path"].to_list()]
    return frame.with_columns(pl.Series("content_sha256", digests, dtype=pl.Utf8)).select(
        list(MANIFEST_SCHEMA)
    )


def write_manifest(frame: pl.DataFrame, final: str | Path) -> Path:
    """Write the hashed manifest atomically as Parquet (`MANIFEST_SCHEMA`, sorted by slide_id)."""
    missing = [c for c in MANIFEST_SCHEMA if c not in frame.columns]
    if missing:
        raise ManifestError(f"Cannot write the manifest to {final}: missing column(s) {missing}.")
    check_unique(frame, final)
    out = frame.select([pl.col(c).cast(t) for c, t in MANIFEST_SCHEMA.items()]).sort("slide_id")
    with atomic_path(final) as tmp:
        out.write_parquet(tmp, compression="zstd", statistics=True)
    return as_path(final)


def read_manifest_parquet(path: str | Path) -> pl.DataFrame:
    """The manifest `write_manifest` wrote; an error telling what to materialise if absent."""
    path = as_path(path)
    if not path.is_file():
        raise ManifestError(f"No slide manifest at {path}: materialise the slide_manifest asset.")
    return read_parquet(path)


def manifest_row(path: str | Path, slide_id: str) -> dict | None:
    """One slide's row of the written manifest, or None when the file or the slide is absent."""
    path = as_path(path)
    if not path.is_file():
        return None
    rows = read_parquet(path).filter(pl.col("slide_id") == slide_id).to_dicts()
    return rows[0] if rows else None


def collect_manifest(
    manifest: Path | None,
    inbox_dir: Path | None,
    *,
    manifest_required: bool = False,
    settle_seconds: float = 0.0,
) -> pl.DataFrame:
    """The slides of a manifest file plus those of an inbox folder, validated and combined.

    A missing manifest is an error only when `manifest_required` (the user named it); finding no
    slide at all is always one. An inbox entry whose name makes no valid slide id is an error
    here; `collect_slides` skips it instead and reports it.
    """
    frame, problems = collect_slides(
        manifest, inbox_dir, manifest_required=manifest_required, settle_seconds=settle_seconds
    )
    if problems:
        raise SlideIdError(problems[0])
    return frame


def collect_slides(
    manifest: Path | None,
    inbox_dir: Path | None,
    *,
    manifest_required: bool = False,
    settle_seconds: float = 0.0,
) -> tuple[pl.DataFrame, list[str]]:
    """`collect_manifest`, leaving out inbox entries that make no valid slide id; returns the
    slides and one problem (what to rename) per entry left out."""
    parts: dict[str, pl.DataFrame] = {}
    problems: list[str] = []
    if manifest is not None and (manifest_required or as_path(manifest).is_file()):
        parts[str(manifest)] = read_manifest(manifest)
    if inbox_dir is not None:
        parts[str(inbox_dir)], problems = inbox_slides(inbox_dir, settle_seconds=settle_seconds)
    frame = combine_manifests(parts)
    if frame.is_empty():
        where = (
            f"the manifest {manifest} has no rows (only a header)" if str(manifest) in parts
            else f"no manifest at {manifest}"
        )
        raise ManifestError(
            f"No slides: {where} and nothing in the inbox {inbox_dir}. "
            "Materialise synthetic_cohort for the demo, or point the slide_inputs resource at "
            "a manifest (columns slide_id, path, mpp, ...) or drop slides into the inbox."
            + (f" Skipped: {' '.join(problems)}" if problems else "")
        )
    return frame, problems
