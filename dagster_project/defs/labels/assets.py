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
from dagster_project.defs.labels import wiring
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.defs.metadata import command_md, table_md
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot


@dg.observable_source_asset(partitions_def=slide_partitions, group_name="labels")
def manual_thresholds(
    context, data_root: DataRoot, label_settings: LabelSettings
) -> dg.DataVersionsByPartition:
    """The manual thresholds CSV, one data version per slide (hash of that slide's rows)."""
    slides = context.instance.get_dynamic_partitions(slide_partitions.name)
    versions = wiring.manual_thresholds_versions(label_settings.csv_path(data_root.layout), slides)
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
    slides = context.instance.get_dynamic_partitions(slide_partitions.name)
    out = wiring.thresholds(layout, slide_id, slides, label_settings.csv_path(layout),
                            label_settings.params(), label_settings.review_figures)
    rows, version, n_manual, figure = out.rows, out.version, out.n_manual, out.review_figure
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "threshold_version": version, "n_stains": rows.height, "n_manual": n_manual,
            "n_auto": rows.height - n_manual, "seconds": round(time.perf_counter() - start, 2),
            "review_figure": dg.MetadataValue.path(str(figure) if figure.exists() else ""),
            "preview": table_md(rows.select("stain", "threshold", "source", "method", "note")),
        },
        check_results=[
            dg.AssetCheckResult(check_name="one_threshold_per_stain",
                                passed=rows["stain_key"].n_unique() == rows.height
                                and bool(rows["threshold"].is_finite().all())),
            dg.AssetCheckResult(check_name="manual_rows_applied", passed=n_manual == out.n_csv,
                                metadata={"csv_rows": out.n_csv, "applied": n_manual}),
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
    out = wiring.labels(layout, slide_id)
    labels, counts = out.labels, out.counts
    return dg.MaterializeResult(
        metadata={
            "n_nuclei": labels.height, "n_labelled": labels.height - counts["excluded"],
            "threshold_version": labels["threshold_version"][0] if labels.height else "",
            "seconds": round(time.perf_counter() - start, 2),
            "counts": table_md(pl.DataFrame({"cell_type": list(counts),
                                             "n_nuclei": list(counts.values())})),
        },
        check_results=[
            dg.AssetCheckResult(check_name="one_label_per_nucleus",
                                passed=labels.height == out.n_features
                                and labels["nucleus_id"].n_unique() == labels.height),
            dg.AssetCheckResult(check_name="every_kept_nucleus_has_a_class",
                                passed=out.n_unassigned == 0,
                                metadata={"unassigned": out.n_unassigned}),
        ],
    )


@dg.asset(group_name="labels",
          deps=["nucleus_features", stain_thresholds, nucleus_labels, "slide_manifest"],
          automation_condition=COHORT_VIEW)
def nucleus_catalog(data_root: DataRoot, label_settings: LabelSettings) -> dg.MaterializeResult:
    """The DuckDB catalog file: views over the datasets, marker positivity, rules, counts."""
    layout, start = data_root.layout, time.perf_counter()
    out = wiring.catalog(layout, label_settings.catalog_path(layout),
                         label_settings.catalog_rules_sql)
    path, counts = out.path, out.counts
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)), "n_stains": out.n_stains,
        "thresholds_suggested": dg.MetadataValue.path(str(out.suggested)),
        "rules": label_settings.catalog_rules_sql, "n_labelled": int(counts["n_nuclei"].sum()),
        "seconds": round(time.perf_counter() - start, 2),
        "counts": table_md(counts),
        "example": command_md(
            f"duckdb {path} \"SELECT * FROM cell_type_counts_per_slide LIMIT 20\""),
    })


@dg.asset_check(asset=nucleus_catalog)
def catalog_matches_label_table(data_root: DataRoot, label_settings: LabelSettings
                                ) -> dg.AssetCheckResult:
    """Every nucleus with thresholds is classified once, as in the materialised label table."""
    agree = wiring.catalog_agreement(label_settings.catalog_path(data_root.layout),
                                     label_settings.catalog_rules_sql)
    return dg.AssetCheckResult(
        passed=agree.n_classified == agree.n_nuclei and agree.n_differing == 0,
        metadata={"nuclei": agree.n_nuclei, "classified": agree.n_classified,
                  "differing": agree.n_differing})
