"""From mean intensities and thresholds to labels through the rule SQL, one slide at a time."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipelines.cell_types import CLASS_INDEX
from pipelines.errors import StainError
from pipelines.ids import nucleus_ids
from pipelines.labels import (
    LABEL_SCHEMA,
    RuleSet,
    class_counts,
    label_slide,
    positivity_view_sql,
)
from pipelines.stains import RULE_STAINS, stain_key
from pipelines.thresholds import AutoThresholdParams, slide_thresholds
from storage.catalog import read_sql
from storage.thresholds_csv import parse_thresholds_csv

KEYS = [stain_key(s) for s in RULE_STAINS]

# positivity pattern -> (cell_type, excluded_at_step) under Table 1
PROTOTYPES: list[tuple[tuple[str, ...], str | None, int | None]] = [
    (("panck", "nakatpase"), "epithelial", None),
    (("panck", "muc2"), "goblet", None),
    (("nakatpase", "cga"), "endocrine", None),
    (("panck", "sox9", "olfm4"), "progenitor", None),
    (("sma", "vimentin"), "fibroblast", None),
    (("vimentin",), "stromal", None),
    (("vimentin", "cd45", "cd11b"), "monocyte", None),
    (("vimentin", "cd45", "cd68", "lysozyme"), "macrophage", None),
    (("vimentin", "cd45", "cd3d", "cd4"), "helper_t", None),
    (("vimentin", "cd45", "cd3d", "cd8"), "cytotoxic_t", None),
    (("vimentin", "cd45", "cd3d"), "t_cell_receptor", None),
    (("vimentin", "cd45", "cd20"), "b_cell", None),
    (("vimentin", "lysozyme"), "myeloid", None),
    (("vimentin", "cd45"), "leukocyte", None),
    (("panck", "vimentin"), None, 3),
    (("vimentin", "cd45", "cd3d", "cd4", "cd8"), None, 8),
    (("cd45",), None, 10),
    ((), None, 10),
]


def make_slide(slide_id: str, n: int, gain: float, seed: int) -> tuple[pl.DataFrame, list]:
    """Features with clean positive/negative intensities and the expected label per nucleus."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(PROTOTYPES), n)
    columns: dict[str, np.ndarray] = {}
    for key in [*KEYS, "dapi"]:
        positive = np.array([key in PROTOTYPES[p][0] for p in picks]) | (key == "dapi")
        columns[f"mean_{key}"] = np.where(
            positive, rng.lognormal(np.log(2000 * gain), 0.25, n), rng.lognormal(np.log(90 * gain),
                                                                                 0.25, n)
        ).astype(np.float32)
    labels = np.arange(1, n + 1, dtype=np.int32)
    frame = pl.DataFrame({
        "nucleus_id": nucleus_ids(slide_id, labels), "slide_id": [slide_id] * n, "label": labels,
        **columns,
    })
    expected = [(PROTOTYPES[p][1], PROTOTYPES[p][2]) for p in picks]
    return frame, expected


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
