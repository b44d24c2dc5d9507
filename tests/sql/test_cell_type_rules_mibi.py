"""A second panel without Python changes: sql/rules/mibi_breast.sql on the real MIBI fields.

The fields in ../shared/data/real_mibi_dcis are single-stain TIFFs (MIBI ion counts). Nuclei are
found here with a plain watershed on the Nuc + HH3 images (grown by 2 px to take in membrane
stains); per-nucleus means, automatic thresholds and the rule file then run as for the colon.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from pipelines.ids import nucleus_ids
from pipelines.labels import RuleSet, label_slide
from pipelines.stains import canonical_stain, stain_key
from pipelines.thresholds import AutoThresholdParams, slide_thresholds
from storage.sql_files import read_sql
from storage.thresholds_csv import parse_thresholds_csv

_HERE = Path(__file__).resolve()
_CANDIDATES = [_HERE.parents[2] / ".." / "shared" / "data",  # a checkout beside shared/
               _HERE.parents[3] / ".." / "shared" / "data"]  # a worktree one level deeper
DATA = next((p / "real_mibi_dcis" for p in _CANDIDATES if (p / "real_mibi_dcis").is_dir()), None)

RULES_SQL = read_sql("rules/mibi_breast.sql")
STAINS = ("PanCK", "ECAD", "Vimentin", "SMA", "CD45", "CD3", "CD4", "CD8", "CD20", "CD68")
KEYS = [stain_key(s) for s in STAINS]


def _hierarchy() -> dict[str, int]:
    con = duckdb.connect()
    cols = ", ".join(f"NULL::BOOLEAN AS {k}" for k in KEYS)
    con.execute(f"CREATE TABLE stain_positivity AS SELECT 1::BIGINT AS nucleus_id, {cols}")
    con.execute(RULES_SQL)
    return dict(con.execute("SELECT cell_type, class_index FROM cell_type_hierarchy").fetchall())


def test_mibi_rules_give_every_kept_nucleus_exactly_one_class() -> None:
    con = duckdb.connect()
    patterns = list(itertools.product([False, True], repeat=len(KEYS)))
    con.execute(
        "CREATE TABLE stain_positivity AS SELECT * FROM (VALUES "
        + ", ".join(f"({i}, {', '.join(map(str, p))})" for i, p in enumerate(patterns))
        + f") AS t(nucleus_id, {', '.join(KEYS)})"
    )
    con.execute(RULES_SQL)
    rows = con.execute("SELECT nucleus_id, cell_type, excluded_at_step FROM nucleus_cell_type "
                       "ORDER BY nucleus_id").fetchall()
    assert len(rows) == 2 ** len(KEYS)
    assert all((c is None) != (s is None) for _, c, s in rows)
    by = {dict(zip(KEYS, patterns[i], strict=True)).__repr__(): (c, s) for i, c, s in rows}

    def outcome(**positive: bool) -> tuple:
        return by[repr({k: positive.get(k, False) for k in KEYS})]

    assert outcome(panck=True) == ("epithelial", None)
    assert outcome(ecad=True, sma=True) == ("myoepithelial", None)
    assert outcome(vimentin=True, sma=True) == ("fibroblast", None)
    assert outcome(cd45=True, cd3=True, cd8=True) == ("cytotoxic_t", None)
    assert outcome(cd45=True, cd68=True, cd4=True) == ("macrophage", None)
    assert outcome(panck=True, cd45=True) == (None, 4)
    assert outcome(cd3=True, cd20=True) == (None, 5)
    assert outcome() == (None, 7)
    assert set(_hierarchy()) == {c for c, _ in by.values() if c is not None}


def _field_features(field: Path) -> pl.DataFrame:
    from scipy import ndimage as ndi
    from skimage import filters, measure, morphology, segmentation
    from tifffile import imread

    images = {canonical_stain(p.stem): imread(p).astype(np.float32) for p in field.glob("*.tif")}
    nuclear = filters.gaussian(images["Nuc"] + images["HH3"], 2)
    blobs = measure.label(nuclear > filters.threshold_otsu(nuclear))
    mask = (np.bincount(blobs.ravel()) >= 30)[blobs] & (blobs > 0)
    distance = ndi.distance_transform_edt(mask)
    seeds = measure.label(morphology.h_maxima(filters.gaussian(distance, 1), 1.0))
    labels = segmentation.expand_labels(segmentation.watershed(-distance, seeds, mask=mask), 2)
    flat = labels.ravel()
    n = int(flat.max())
    area = np.maximum(np.bincount(flat, minlength=n + 1)[1:], 1)
    slide_id = field.name.replace("_", "-")
    means = {f"mean_{stain_key(s)}": (np.bincount(flat, weights=im.ravel(), minlength=n + 1)[1:]
                                      / area).astype(np.float32) for s, im in images.items()}
    ids = np.arange(1, n + 1, dtype=np.int32)
    return pl.DataFrame({"nucleus_id": nucleus_ids(slide_id, ids), "slide_id": [slide_id] * n,
                         "label": ids, **means})


@pytest.mark.skipif(DATA is None, reason="the real MIBI fields (../shared/data) are not here")
def test_real_mibi_fields_are_labelled_with_the_breast_rule_file() -> None:
    classes = _hierarchy()
    rules = RuleSet(sql=RULES_SQL, stains=STAINS, name="mibi_breast")
    for field in sorted(DATA.iterdir()):
        features = _field_features(field)
        slide_id = features["slide_id"][0]
        thresholds = slide_thresholds(slide_id, features, parse_thresholds_csv(""),
                                      AutoThresholdParams())
        labels = label_slide(slide_id, features, thresholds, rules, classes)
        assert labels.height == features.height > 300
        counts = labels.filter(pl.col("cell_type").is_not_null())["cell_type"].value_counts()
        top = counts.sort("count", descending=True)["cell_type"][0]
        assert top == "epithelial"  # ductal carcinoma in situ: mostly epithelium
        assert counts.height >= 5
        # the epithelial stains have two populations; the immune ones are rare in these fields
        notes = dict(zip(thresholds["stain"], thresholds["note"], strict=True))
        assert notes["PanCK"] == "" and notes["ECAD"] == ""
