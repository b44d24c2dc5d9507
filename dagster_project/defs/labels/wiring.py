"""Glue of the labels stage: read through storage/, call pipelines/, write through storage/.
No science here, and no Dagster: a notebook can call every function with a DataLayout and the
settings' paths (LabelSettings.csv_path, .catalog_path, .params)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.cell_types import CELL_TYPES, CLASS_INDEX
from pipelines.labels import (
    RuleSet,
    checked_stain_keys,
    class_counts,
    empty_positivity_view_sql,
    label_slide,
    positivity_view_sql,
)
from pipelines.stains import RULE_STAINS, stain_key
from pipelines.thresholds import (
    AutoThresholdParams,
    manual_versions,
    review_figure_png,
    slide_thresholds,
)
from storage.atomic import atomic_write_bytes
from storage.catalog import (
    DEFAULT_RULES_SQL,
    build_catalog,
    project_catalog_spec,
    query_catalog,
    threshold_stain_keys,
)
from storage.layout import DataLayout
from storage.parquet_dataset import read_slide_partition, write_slide_partition
from storage.sql_files import read_sql
from storage.thresholds_csv import read_thresholds_csv, write_thresholds_csv


def manual_thresholds_versions(csv_path: Path, slide_ids: Iterable[str]) -> dict[str, str]:
    """Per slide, the hash of its rows in the manual thresholds CSV ("auto": no rows)."""
    slides = list(slide_ids)
    return manual_versions(read_thresholds_csv(csv_path, set(slides)), slides)


@dataclass(frozen=True)
class ThresholdsOutcome:
    rows: pl.DataFrame
    n_manual: int
    n_csv: int
    review_figure: Path

    @property
    def version(self) -> str:
        return self.rows["threshold_version"][0]


def thresholds(layout: DataLayout, slide_id: str, slide_ids: Iterable[str], csv_path: Path,
               params: AutoThresholdParams, review_figure: bool) -> ThresholdsOutcome:
    """The slide's cut-offs (manual from the CSV, automatic elsewhere) into
    `layout.thresholds_dir`, and its review PNG when asked for."""
    manual = read_thresholds_csv(csv_path, set(slide_ids))
    features = read_slide_partition(layout.features_dir, slide_id)
    rows = slide_thresholds(slide_id, features, manual, params)
    write_slide_partition(layout.thresholds_dir, slide_id, rows)
    figure = layout.threshold_review_png(slide_id)
    if review_figure:
        atomic_write_bytes(figure, review_figure_png(slide_id, features, rows))
    n_manual = int((rows["source"] == "manual").sum())
    n_csv = manual.filter(pl.col("slide_id") == slide_id).height
    return ThresholdsOutcome(rows, n_manual, n_csv, figure)


@dataclass(frozen=True)
class LabelsOutcome:
    labels: pl.DataFrame
    n_features: int
    counts: dict[str, int]
    n_unassigned: int


def labels(layout: DataLayout, slide_id: str) -> LabelsOutcome:
    """Table 1 class of every nucleus of the slide into `layout.labels_dir`; `n_unassigned`
    counts kept nuclei no rule classified (none, when the rules are complete)."""
    features = read_slide_partition(layout.features_dir, slide_id)
    thresholds = read_slide_partition(layout.thresholds_dir, slide_id)
    rules = RuleSet(sql=read_sql(DEFAULT_RULES_SQL))
    table = label_slide(slide_id, features, thresholds, rules, CLASS_INDEX)
    write_slide_partition(layout.labels_dir, slide_id, table)
    unassigned = table.filter(pl.col("cell_type").is_null() & pl.col("excluded_at_step").is_null())
    return LabelsOutcome(table, features.height, class_counts(table, CELL_TYPES),
                         unassigned.height)


@dataclass(frozen=True)
class CatalogOutcome:
    path: Path
    n_stains: int
    counts: pl.DataFrame
    suggested: Path


def catalog(layout: DataLayout, catalog_path: Path, rules_sql: str) -> CatalogOutcome:
    """Build the DuckDB catalog over every slide's datasets, and write the thresholds in use
    as a CSV a person can correct and save as the manual thresholds."""
    keys = checked_stain_keys(threshold_stain_keys(layout))
    positivity = positivity_view_sql(keys) if keys else empty_positivity_view_sql(
        stain_key(s) for s in RULE_STAINS)  # no slide has thresholds yet: an empty catalog
    path = build_catalog(catalog_path, project_catalog_spec(layout, positivity, rules_sql))
    counts = query_catalog(path, read_sql("queries/cell_type_counts.sql"))
    suggested = write_thresholds_csv(layout.thresholds_suggested_csv, query_catalog(
        path, read_sql("queries/thresholds_suggested.sql")))
    return CatalogOutcome(path, len(keys), counts, suggested)


@dataclass(frozen=True)
class CatalogAgreement:
    n_classified: int
    n_nuclei: int
    n_differing: int


def catalog_agreement(catalog_path: Path, rules_sql: str) -> CatalogAgreement:
    """Nuclei with thresholds against those the catalog classified, and (with Table 1's rules)
    how many of its classes differ from the label table."""
    n = query_catalog(catalog_path, read_sql("queries/catalog_classified_counts.sql")).row(0)
    differ = query_catalog(catalog_path, read_sql("queries/catalog_label_differences.sql")
                           ).item() if rules_sql == DEFAULT_RULES_SQL else 0
    return CatalogAgreement(n[0], n[1], differ)
