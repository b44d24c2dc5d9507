"""Per-slide stain thresholds and nucleus labels, and the DuckDB catalog over all slides.

`manual_thresholds` is the thresholds CSV seen per slide: its data version is a hash of that
slide's rows, so editing the CSV makes only the touched slides' `stain_thresholds` stale;
`stain_thresholds` reports its threshold_version as data version, so `nucleus_labels` of a
slide goes stale only when that slide's thresholds really changed.
"""

import time

import dagster as dg
import polars as pl

from dagster_project.automation import COHORT_VIEW, SLIDE_STAGE
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from pipelines.cell_types import CELL_TYPES, CLASS_INDEX
from pipelines.labels import (
    RuleSet,
    checked_stain_keys,
    class_counts,
    empty_positivity_view_sql,
    label_slide,
    positivity_view_sql,
)
from pipelines.markdown import PREVIEW_ROWS, markdown_table
from pipelines.stains import RULE_STAINS, stain_key
from pipelines.thresholds import manual_versions, review_figure_png, slide_thresholds
from storage.atomic import atomic_write_bytes
from storage.catalog import (
    DEFAULT_RULES_SQL,
    build_catalog,
    project_catalog_spec,
    query_catalog,
    threshold_stain_keys,
)
from storage.parquet_dataset import read_slide_partition, write_slide_partition
from storage.sql_files import read_sql
from storage.thresholds_csv import read_thresholds_csv, write_thresholds_csv


@dg.observable_source_asset(partitions_def=slide_partitions, group_name="labels")
def manual_thresholds(
    context, data_root: DataRoot, label_settings: LabelSettings
) -> dg.DataVersionsByPartition:
    """The manual thresholds CSV, one data version per slide (hash of that slide's rows)."""
    slides = context.instance.get_dynamic_partitions(slide_partitions.name)
    manual = read_thresholds_csv(label_settings.csv_path(data_root.layout), set(slides))
    versions = manual_versions(manual, slides)
    return dg.DataVersionsByPartition({s: dg.DataVersion(v) for s, v in versions.items()})


@dg.asset(
    partitions_def=slide_partitions, group_name="labels",
    deps=["nucleus_features", manual_thresholds], automation_condition=SLIDE_STAGE,
    check_specs=[dg.AssetCheckSpec("one_threshold_per_stain", asset="stain_thresholds"),
                 dg.AssetCheckSpec("manual_rows_applied", asset="stain_thresholds")],
)
def stain_thresholds(
    context: dg.AssetExecutionContext, data_root: DataRoot, label_settings: LabelSettings
) -> dg.MaterializeResult:
    """Per-stain cut-offs of one slide: manual from the CSV, automatic elsewhere; review PNG."""
    slide_id, layout, start = context.partition_key, data_root.layout, time.perf_counter()
    slides = set(context.instance.get_dynamic_partitions(slide_partitions.name))
    manual = read_thresholds_csv(label_settings.csv_path(layout), slides)
    features = read_slide_partition(layout.features_dir, slide_id)
    rows = slide_thresholds(slide_id, features, manual, label_settings.params())
    write_slide_partition(layout.thresholds_dir, slide_id, rows)
    figure = layout.figures_dir("thresholds") / f"{slide_id}.png"
    if label_settings.review_figures:
        atomic_write_bytes(figure, review_figure_png(slide_id, features, rows))
    version = rows["threshold_version"][0]
    n_manual = int((rows["source"] == "manual").sum())
    n_csv = manual.filter(pl.col("slide_id") == slide_id).height
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "threshold_version": version, "n_stains": rows.height, "n_manual": n_manual,
            "n_auto": rows.height - n_manual, "seconds": round(time.perf_counter() - start, 2),
            "review_figure": dg.MetadataValue.path(str(figure) if figure.exists() else ""),
            "preview": dg.MetadataValue.md(markdown_table(
                rows.select("stain", "threshold", "source", "method", "note"), PREVIEW_ROWS)),
        },
        check_results=[
            dg.AssetCheckResult(check_name="one_threshold_per_stain",
                                passed=rows["stain_key"].n_unique() == rows.height
                                and bool(rows["threshold"].is_finite().all())),
            dg.AssetCheckResult(check_name="manual_rows_applied", passed=n_manual == n_csv,
                                metadata={"csv_rows": n_csv, "applied": n_manual}),
        ],
    )


@dg.asset(
    partitions_def=slide_partitions, group_name="labels",
    deps=["nucleus_features", stain_thresholds], automation_condition=SLIDE_STAGE,
    check_specs=[dg.AssetCheckSpec("one_label_per_nucleus", asset="nucleus_labels"),
                 dg.AssetCheckSpec("every_kept_nucleus_has_a_class", asset="nucleus_labels")],
)
def nucleus_labels(context: dg.AssetExecutionContext, data_root: DataRoot) -> dg.MaterializeResult:
    """Table 1 class of every nucleus of one slide, with the threshold version it came from."""
    slide_id, layout, start = context.partition_key, data_root.layout, time.perf_counter()
    features = read_slide_partition(layout.features_dir, slide_id)
    thresholds = read_slide_partition(layout.thresholds_dir, slide_id)
    rules = RuleSet(sql=read_sql(DEFAULT_RULES_SQL))
    labels = label_slide(slide_id, features, thresholds, rules, CLASS_INDEX)
    write_slide_partition(layout.labels_dir, slide_id, labels)
    counts = class_counts(labels, CELL_TYPES)
    unassigned = labels.filter(pl.col("cell_type").is_null() & pl.col("excluded_at_step").is_null())
    return dg.MaterializeResult(
        metadata={
            "n_nuclei": labels.height, "n_labelled": labels.height - counts["excluded"],
            "threshold_version": labels["threshold_version"][0] if labels.height else "",
            "seconds": round(time.perf_counter() - start, 2),
            "counts": dg.MetadataValue.md(markdown_table(
                pl.DataFrame({"cell_type": list(counts), "n_nuclei": list(counts.values())}),
                PREVIEW_ROWS)),
        },
        check_results=[
            dg.AssetCheckResult(check_name="one_label_per_nucleus",
                                passed=labels.height == features.height
                                and labels["nucleus_id"].n_unique() == labels.height),
            dg.AssetCheckResult(check_name="every_kept_nucleus_has_a_class",
                                passed=unassigned.height == 0,
                                metadata={"unassigned": unassigned.height}),
        ],
    )


@dg.asset(group_name="labels",
          deps=["nucleus_features", stain_thresholds, nucleus_labels, "slide_manifest"],
          automation_condition=COHORT_VIEW)
def nucleus_catalog(data_root: DataRoot, label_settings: LabelSettings) -> dg.MaterializeResult:
    """The DuckDB catalog file: views over the datasets, marker positivity, rules, counts."""
    layout, start = data_root.layout, time.perf_counter()
    keys = checked_stain_keys(threshold_stain_keys(layout))
    positivity = positivity_view_sql(keys) if keys else empty_positivity_view_sql(
        stain_key(s) for s in RULE_STAINS)  # no slide has thresholds yet: an empty catalog
    spec = project_catalog_spec(layout, positivity, label_settings.catalog_rules_sql)
    path = build_catalog(label_settings.catalog_path(layout), spec)
    counts = query_catalog(path, read_sql("queries/cell_type_counts.sql"))
    # every threshold in use, as a CSV a person can correct and save as the manual thresholds
    suggested = write_thresholds_csv(layout.root / "thresholds_suggested.csv", query_catalog(
        path, read_sql("queries/thresholds_suggested.sql")))
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)), "n_stains": len(keys),
        "thresholds_suggested": dg.MetadataValue.path(str(suggested)),
        "rules": label_settings.catalog_rules_sql, "n_labelled": int(counts["n_nuclei"].sum()),
        "seconds": round(time.perf_counter() - start, 2),
        "counts": dg.MetadataValue.md(markdown_table(counts, PREVIEW_ROWS)),
        "example": dg.MetadataValue.md(
            f"`duckdb {path} \"SELECT * FROM cell_type_counts_per_slide LIMIT 20\"`"),
    })


@dg.asset_check(asset=nucleus_catalog)
def catalog_matches_label_table(data_root: DataRoot, label_settings: LabelSettings
                                ) -> dg.AssetCheckResult:
    """Every nucleus with thresholds is classified once, as in the materialised label table."""
    path = label_settings.catalog_path(data_root.layout)
    n = query_catalog(path, read_sql("queries/catalog_classified_counts.sql")).row(0)
    same_rules = label_settings.catalog_rules_sql == DEFAULT_RULES_SQL
    differ = query_catalog(path, read_sql("queries/catalog_label_differences.sql")).item() \
        if same_rules else 0
    return dg.AssetCheckResult(passed=n[0] == n[1] and differ == 0,
                               metadata={"nuclei": n[1], "classified": n[0], "differing": differ})
