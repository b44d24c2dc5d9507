"""The DuckDB catalog file: views over the Parquet datasets, the Table 1 rules, the summaries."""

from __future__ import annotations

import os

import duckdb
import numpy as np
import polars as pl
import pytest

from pipelines.cell_types import CELL_TYPES, CLASS_INDEX, HIERARCHY
from pipelines.labels import (
    RuleSet,
    checked_stain_keys,
    empty_positivity_view_sql,
    label_slide,
    positivity_view_sql,
)
from pipelines.stains import RULE_STAINS, stain_key
from pipelines.thresholds import AutoThresholdParams, slide_thresholds
from storage.catalog import (
    CatalogSpec,
    ParquetSource,
    build_catalog,
    project_catalog_spec,
    query_catalog,
    threshold_stain_keys,
)
from storage.errors import StoreLayoutError
from storage.layout import DataLayout
from storage.parquet_dataset import write_slide_partition
from storage.sql_files import read_sql
from storage.thresholds_csv import parse_thresholds_csv
from tests.labels_fixtures import make_slide

SLIDES = {"S1": ("P1", 1.0), "S2": ("P1", 2.5), "S3": ("P2", 0.6)}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[DataLayout, dict[str, list], dict[str, pl.DataFrame]]:
    layout = DataLayout(tmp_path_factory.mktemp("data"))
    expected, labels = {}, {}
    rules = RuleSet(sql=read_sql("cell_type_rules.sql"))
    for i, (slide_id, (_, gain)) in enumerate(SLIDES.items()):
        features, expected[slide_id] = make_slide(slide_id, 700, gain, seed=10 + i)
        write_slide_partition(layout.features_dir, slide_id, features)
        thresholds = slide_thresholds(slide_id, features, parse_thresholds_csv(""),
                                      AutoThresholdParams())
        write_slide_partition(layout.thresholds_dir, slide_id, thresholds)
        labels[slide_id] = label_slide(slide_id, features, thresholds, rules, CLASS_INDEX)
        write_slide_partition(layout.labels_dir, slide_id, labels[slide_id])
    pl.DataFrame({
        "slide_id": list(SLIDES), "patient_id": [p for p, _ in SLIDES.values()],
        "site": ["ascending_colon"] * 3, "condition": ["normal"] * 3,
        "path": ["/x"] * 3, "mpp": [0.32] * 3, "content_sha256": ["0"] * 3,
    }).write_parquet(layout.manifest_parquet)
    keys = checked_stain_keys(threshold_stain_keys(layout))
    build_catalog(layout.catalog_db, project_catalog_spec(layout, positivity_view_sql(keys)))
    return layout, expected, labels


def test_catalog_views_label_every_nucleus_as_table1_says(cohort) -> None:
    layout, expected, _ = cohort
    got = query_catalog(
        layout.catalog_db,
        "SELECT slide_id, cell_type, excluded_at_step FROM nucleus_classes "
        "ORDER BY slide_id, nucleus_id",
    )
    want = [(s, c, e) for s in sorted(expected) for c, e in expected[s]]
    assert list(got.iter_rows()) == want


def test_catalog_labels_equal_the_materialised_label_table(cohort) -> None:
    layout, _, _ = cohort
    diff = query_catalog(
        layout.catalog_db,
        "SELECT count(*) AS n FROM nucleus_classes AS v JOIN nucleus_labels AS l USING "
        "(nucleus_id) WHERE v.cell_type IS DISTINCT FROM l.cell_type "
        "OR v.excluded_at_step IS DISTINCT FROM l.excluded_at_step "
        "OR v.class_index IS DISTINCT FROM (CASE WHEN l.class_index >= 0 THEN l.class_index END) "
        "OR v.threshold_version IS DISTINCT FROM l.threshold_version",
    )
    assert diff["n"][0] == 0
    n = query_catalog(layout.catalog_db, "SELECT count(*) AS n FROM nucleus_labels")
    assert n["n"][0] == 3 * 700


def test_counts_per_slide_patient_class_and_compartment(cohort) -> None:
    layout, expected, _ = cohort
    per_slide = query_catalog(
        layout.catalog_db, "SELECT * FROM cell_type_counts_per_slide WHERE slide_id = 'S2'"
    )
    assert per_slide["cell_type"].to_list() == list(CELL_TYPES)
    want = {c: sum(1 for e, _ in expected["S2"] if e == c) for c in CELL_TYPES}
    assert dict(zip(per_slide["cell_type"], per_slide["n_nuclei"], strict=True)) == want
    assert per_slide["fraction_of_labelled"].sum() == pytest.approx(1.0)
    per_patient = query_catalog(
        layout.catalog_db,
        "SELECT patient_id, sum(n_nuclei) AS n, max(n_slides) AS s "
        "FROM cell_type_counts_per_patient GROUP BY patient_id ORDER BY patient_id",
    )
    kept = {s: sum(1 for c, _ in expected[s] if c is not None) for s in expected}
    assert list(per_patient.iter_rows()) == [("P1", kept["S1"] + kept["S2"], 2),
                                             ("P2", kept["S3"], 1)]
    cohort_counts = query_catalog(layout.catalog_db, "SELECT * FROM cell_type_counts")
    assert cohort_counts["n_nuclei"].sum() == sum(kept.values())
    compartments = query_catalog(
        layout.catalog_db,
        "SELECT compartment, lineage, sum(n_nuclei) AS n FROM compartment_counts_per_slide "
        "GROUP BY ALL",
    )
    immune = sum(1 for s in expected for c, _ in expected[s]
                 if c is not None and HIERARCHY[c][0] == "immune")
    assert compartments.filter(pl.col("compartment") == "immune")["n"].sum() == immune
    lymphoid = sum(1 for s in expected for c, _ in expected[s]
                   if c is not None and HIERARCHY[c][1] == "lymphoid")
    assert compartments.filter(pl.col("lineage") == "lymphoid")["n"].sum() == lymphoid
    excluded = query_catalog(
        layout.catalog_db,
        "SELECT excluded_at_step, sum(n_nuclei) AS n FROM exclusion_counts_per_slide "
        "GROUP BY ALL ORDER BY 1",
    )
    assert set(excluded["excluded_at_step"].to_list()) == {3, 8, 10}


def test_catalog_opens_in_a_plain_duckdb_connection(cohort) -> None:
    layout, _, _ = cohort
    con = duckdb.connect(str(layout.catalog_db), read_only=True)
    views = {r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    con.close()
    assert {"nucleus_features", "stain_thresholds", "stain_positivity", "nucleus_cell_type",
            "nucleus_classes", "cell_type_counts_per_slide", "cell_type_counts_per_patient",
            "cell_type_counts", "compartment_counts_per_slide", "nucleus_labels"} <= views


def test_rebuilding_replaces_the_file_whole(cohort, tmp_path) -> None:
    layout, _, _ = cohort
    target = tmp_path / "catalog.duckdb"
    target.write_bytes(b"old")
    spec = CatalogSpec(sources=(ParquetSource("f", str(layout.features_dir / "slide_id=*" /
                                                      "part-0.parquet")),),
                       scripts=("CREATE VIEW n AS SELECT count(*) AS n FROM f",))
    build_catalog(target, spec)
    assert query_catalog(target, "SELECT n FROM n")["n"][0] == 2100
    assert sorted(os.listdir(tmp_path)) == ["catalog.duckdb"]


def test_a_failed_build_keeps_the_old_catalog(tmp_path) -> None:
    target = tmp_path / "catalog.duckdb"
    build_catalog(target, CatalogSpec(sources=(), scripts=("CREATE VIEW v AS SELECT 1 AS x",)))
    with pytest.raises(duckdb.Error):
        build_catalog(target, CatalogSpec(sources=(), scripts=("CREATE VIEW broken AS SELEC",)))
    assert query_catalog(target, "SELECT x FROM v")["x"][0] == 1
    assert sorted(os.listdir(tmp_path)) == ["catalog.duckdb"]


def test_missing_required_dataset_is_a_clear_error(tmp_path) -> None:
    spec = CatalogSpec(sources=(ParquetSource("nucleus_features", str(tmp_path / "*.parquet")),))
    with pytest.raises(StoreLayoutError, match="nucleus_features"):
        build_catalog(tmp_path / "c.duckdb", spec)
    assert threshold_stain_keys(DataLayout(tmp_path)) == []


def test_a_cohort_without_thresholds_gives_an_empty_catalog(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    positivity = empty_positivity_view_sql(stain_key(s) for s in RULE_STAINS)
    build_catalog(layout.catalog_db, project_catalog_spec(layout, positivity))
    for view in ("nucleus_classes", "cell_type_counts", "cell_type_counts_per_patient"):
        assert query_catalog(layout.catalog_db, f"SELECT count(*) AS n FROM {view}")["n"][0] == 0


def test_hostile_stain_key_in_the_thresholds_dataset_never_reaches_sql(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    rows = pl.DataFrame({"slide_id": ["S1", "S1"], "stain_key": ["cd3d", 'x" AS y; DROP --']})
    write_slide_partition(layout.thresholds_dir, "S1", rows)
    from pipelines.errors import StainError

    with pytest.raises(StainError):
        positivity_view_sql(threshold_stain_keys(layout))
    assert np.array_equal(sorted(threshold_stain_keys(layout)), sorted(rows["stain_key"]))
