"""From mean intensities and thresholds to labels through the rule SQL, one slide at a time."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.cell_types import CLASS_INDEX
from pipelines.errors import StainError
from pipelines.labels import (
    LABEL_SCHEMA,
    RuleSet,
    class_counts,
    label_slide,
    positivity_view_sql,
)
from pipelines.thresholds import AutoThresholdParams, slide_thresholds
from storage.sql_files import read_sql
from storage.thresholds_csv import parse_thresholds_csv
from tests.labels_fixtures import make_slide

RULES = RuleSet(sql=read_sql("cell_type_rules.sql"))


def test_labels_follow_table1_from_auto_thresholds() -> None:
    features, expected = make_slide("S1", 1500, gain=2.0, seed=3)
    thresholds = slide_thresholds("S1", features, parse_thresholds_csv(""), AutoThresholdParams())
    labels = label_slide("S1", features, thresholds, RULES, CLASS_INDEX)
    assert labels.schema == pl.Schema(LABEL_SCHEMA)
    assert labels["nucleus_id"].to_list() == sorted(features["nucleus_id"].to_list())
    got = list(zip(labels["cell_type"].to_list(), labels["excluded_at_step"].to_list(),
                   strict=True))
    assert got == expected
    kept = labels.filter(pl.col("cell_type").is_not_null())
    assert kept["class_index"].to_list() == [CLASS_INDEX[c] for c in kept["cell_type"]]
    assert labels.filter(pl.col("cell_type").is_null())["class_index"].unique().to_list() == [-1]
    assert labels["threshold_version"].unique().to_list() == [thresholds["threshold_version"][0]]
    counts = class_counts(labels, list(CLASS_INDEX))
    assert sum(counts.values()) == 1500
    assert counts["excluded"] == sum(1 for c, _ in expected if c is None)


def test_a_manual_threshold_changes_the_labels_of_its_slide() -> None:
    features, _ = make_slide("S1", 400, gain=1.0, seed=4)
    params = AutoThresholdParams()
    auto = label_slide("S1", features,
                       slide_thresholds("S1", features, parse_thresholds_csv(""), params),
                       RULES, CLASS_INDEX)
    # a CD45 threshold above every nucleus: leukocytes become CD45- and fall out at step 10
    csv = "slide_id,stain,threshold,set_by,note\nS1,CD45,1e9,ana,too bright\n"
    manual = label_slide("S1", features,
                         slide_thresholds("S1", features, parse_thresholds_csv(csv), params),
                         RULES, CLASS_INDEX)
    assert manual["threshold_version"][0] != auto["threshold_version"][0]
    assert (auto["cell_type"] == "leukocyte").sum() > 0
    assert (manual["cell_type"] == "leukocyte").sum() == 0


def test_a_slide_without_a_rule_stain_is_refused() -> None:
    features, _ = make_slide("S1", 200, gain=1.0, seed=5)
    features = features.drop("mean_cd8")
    thresholds = slide_thresholds("S1", features, parse_thresholds_csv(""), AutoThresholdParams())
    with pytest.raises(StainError, match="CD8"):
        label_slide("S1", features, thresholds, RULES, CLASS_INDEX)


@pytest.mark.parametrize(
    "hostile", ['cd3d"; DROP TABLE x; --', "cd3d' OR 1=1 --", "CD3D", "mean cd3d", ""]
)
def test_positivity_sql_refuses_keys_that_are_not_plain_identifiers(hostile: str) -> None:
    with pytest.raises(StainError):
        positivity_view_sql(["panck", hostile])


def test_positivity_sql_quotes_every_identifier() -> None:
    sql = positivity_view_sql(["cd3d", "panck"])
    assert 'f."mean_cd3d" > t."cd3d" AS "cd3d"' in sql
    assert "FILTER (WHERE stain_key = 'panck') AS \"panck\"" in sql
