"""Thresholds to positivity to cell types: the SQL that joins them, and per-slide labelling.

The rules themselves live in `sql/` (Table 1 in `sql/cell_type_rules.sql`); this module only
generates the one piece of SQL that depends on which stains a cohort has (`stain_positivity`,
one BOOLEAN column per stain key) and runs a rule file on one slide's frames in an in-memory
DuckDB, after the class table (`sql/cell_types.sql`). Every stain name that reaches SQL is
checked with `stain_key` and quoted, so a stain name can never inject SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import polars as pl

from pipelines.errors import StainError
from pipelines.stains import RULE_STAINS, stain_key
from pipelines.thresholds import MEAN_PREFIX
from storage.sql_files import cell_types_sql, read_sql
from storage.sql_quote import quote_identifier, quote_literal

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SLIDE_LABELS_SQL = "queries/slide_labels.sql"

LABEL_SCHEMA: dict[str, pl.DataType] = {
    "nucleus_id": pl.Int64(),
    "slide_id": pl.Utf8(),
    "cell_type": pl.Utf8(),
    "class_index": pl.Int16(),
    "excluded_at_step": pl.Int16(),
    "threshold_version": pl.Utf8(),
}


def checked_stain_keys(keys: Iterable[str]) -> list[str]:
    """The keys, sorted and unique, each proven to be a plain lower-case identifier."""
    out = sorted(set(keys))
    for key in out:
        if not isinstance(key, str) or stain_key(key) != key or not _IDENTIFIER.match(key):
            raise StainError(
                f"Stain key {key!r} is not a plain column name (letters, digits, underscores); "
                "rename the stain."
            )
    return out


def positivity_view_sql(stain_keys: Iterable[str]) -> str:
    """SQL creating `stain_thresholds_wide` and `stain_positivity` for these stain keys.

    Needs `nucleus_features` (nucleus_id, slide_id, mean_<key>...) and `stain_thresholds`
    (slide_id, stain_key, threshold, threshold_version). A nucleus is positive for a stain iff
    its mean intensity is greater than its slide's threshold; slides without thresholds are left
    out; a stain without a threshold on a slide gives NULL.
    """
    keys = checked_stain_keys(stain_keys)
    if not keys:
        raise StainError("No stain keys to build stain_positivity from: compute thresholds first.")
    wide = ",\n    ".join(
        f"max(threshold) FILTER (WHERE stain_key = {quote_literal(k)}) AS {quote_identifier(k)}"
        for k in keys
    )
    positive = ",\n    ".join(
        f"f.{quote_identifier(MEAN_PREFIX + k)} > t.{quote_identifier(k)} AS {quote_identifier(k)}"
        for k in keys
    )
    return (
        "CREATE OR REPLACE VIEW stain_thresholds_wide AS\n"
        "SELECT\n    slide_id,\n    any_value(threshold_version) AS threshold_version,\n"
        f"    {wide}\nFROM stain_thresholds\nGROUP BY slide_id;\n\n"
        "CREATE OR REPLACE VIEW stain_positivity AS\n"
        "SELECT\n    f.nucleus_id,\n    f.slide_id,\n    t.threshold_version,\n"
        f"    {positive}\n"
        "FROM nucleus_features AS f\n"
        "JOIN stain_thresholds_wide AS t ON t.slide_id = f.slide_id;\n"
    )


def empty_positivity_view_sql(stain_keys: Iterable[str]) -> str:
    """SQL creating an empty `stain_positivity` with these BOOLEAN columns, for a catalog of a
    cohort that has no thresholds yet (every view still opens, with no rows)."""
    keys = checked_stain_keys(stain_keys)
    columns = ", ".join(f"NULL::BOOLEAN AS {quote_identifier(k)}" for k in keys)
    return (
        "CREATE OR REPLACE VIEW stain_positivity AS SELECT NULL::BIGINT AS nucleus_id, "
        f"NULL::VARCHAR AS slide_id, NULL::VARCHAR AS threshold_version, {columns} WHERE FALSE;\n"
    )


@dataclass(frozen=True)
class RuleSet:
    """A rule file's SQL text and the stains it reads (canonical names)."""

    sql: str
    stains: tuple[str, ...] = RULE_STAINS
    name: str = "table1"


def label_slide(
    slide_id: str,
    features: pl.DataFrame,
    thresholds: pl.DataFrame,
    rules: RuleSet,
    class_index: Mapping[str, int],
) -> pl.DataFrame:
    """One label row per nucleus of the slide (LABEL_SCHEMA), through the rule file's SQL.

    `class_index` maps each class the rules can give to its index; excluded nuclei get
    cell_type null, class_index -1 and the Table 1 step that excluded them.
    """
    keys = checked_stain_keys(thresholds["stain_key"].to_list())
    needed = [stain_key(s) for s in rules.stains]
    missing = [s for s, k in zip(rules.stains, needed, strict=True) if k not in keys]
    if missing:
        raise StainError(
            f"Slide {slide_id!r}: rule set {rules.name!r} needs stain(s) {missing}, which the "
            "slide has no threshold for; check the slide's stain names."
        )
    for key in needed:
        if MEAN_PREFIX + key not in features.columns:
            raise StainError(f"Slide {slide_id!r}: features lack column {MEAN_PREFIX + key}.")
    versions = thresholds["threshold_version"].unique().to_list()
    if len(versions) != 1:
        raise StainError(f"Slide {slide_id!r}: thresholds carry {len(versions)} versions.")
    con = duckdb.connect()
    try:
        columns = ["nucleus_id", "slide_id", *[MEAN_PREFIX + k for k in needed]]
        con.register("nucleus_features", features.select(columns).to_arrow())
        con.register("stain_thresholds", thresholds.to_arrow())
        con.execute(positivity_view_sql(needed))
        con.execute(cell_types_sql())
        con.execute(rules.sql)
        # one slide, one threshold version: both are constants, so no join back to positivity
        result = con.sql(read_sql(SLIDE_LABELS_SQL)).to_arrow_table()
    finally:
        con.close()
    frame = pl.from_arrow(result).with_columns(
        slide_id=pl.lit(slide_id, pl.Utf8), threshold_version=pl.lit(versions[0], pl.Utf8)
    )
    unknown = sorted(set(frame["cell_type"].drop_nulls().unique().to_list()) - set(class_index))
    if unknown:
        raise StainError(f"Slide {slide_id!r}: rules gave classes {unknown} with no class index.")
    if frame.height != features.height:
        raise StainError(
            f"Slide {slide_id!r}: {features.height} nuclei but {frame.height} labels; "
            "nucleus ids must be unique."
        )
    index = pl.col("cell_type").replace_strict(dict(class_index), default=-1, return_dtype=pl.Int16)
    return frame.with_columns(class_index=index).select(list(LABEL_SCHEMA)).cast(LABEL_SCHEMA)


def class_counts(labels: pl.DataFrame, classes: Sequence[str]) -> dict[str, int]:
    """Nuclei per class (every class listed, zero included) plus `excluded`."""
    counts = dict(labels.group_by("cell_type").len().iter_rows())
    out = {c: int(counts.get(c, 0)) for c in classes}
    out["excluded"] = int(counts.get(None, 0))
    return out
