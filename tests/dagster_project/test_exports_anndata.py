"""nucleus_anndata and cohort_anndata: the .h5ad files, read back with anndata itself, hold the
values of the Parquet partitions they were made from."""

from __future__ import annotations

import anndata as ad
import dagster as dg
import numpy as np
import pandas as pd
import polars as pl
import pytest

from dagster_project.defs.exports.assets import cohort_anndata, nucleus_anndata
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.resources import DataRoot
from pipelines.cell_types import CELL_TYPES, CLASS_INDEX
from pipelines.errors import SlideInputError
from pipelines.inference import inference_frame
from pipelines.labels import RuleSet, label_slide
from pipelines.nucleus_table import nucleus_table
from pipelines.thresholds import AutoThresholdParams, slide_thresholds
from storage.catalog import DEFAULT_RULES_SQL
from storage.layout import DataLayout
from storage.manifest import MANIFEST_SCHEMA, write_manifest
from storage.parquet_dataset import read_slide_partition, write_slide_partition
from storage.sql_files import read_sql
from storage.thresholds_csv import parse_thresholds_csv
from tests.labels_fixtures import make_slide

SLIDES = {"S1": ("P1", "colon", "tumour"), "S2": ("P2", "colon", "normal")}


def _features(slide_id: str, n: int, seed: int) -> pl.DataFrame:
    features, _ = make_slide(slide_id, n, 1.0 + seed / 10, seed=seed)
    rng = np.random.default_rng(seed)
    extra = {"mean_ki67": rng.gamma(2.0, 50.0, n).astype(np.float32)} if slide_id == "S1" else {}
    return features.with_columns(
        centroid_x_um=pl.Series(rng.uniform(0, 400, n)),
        centroid_y_um=pl.Series(rng.uniform(0, 300, n)),
        **extra,
    )


@pytest.fixture
def stage(tmp_path) -> tuple[DataLayout, dg.DagsterInstance]:
    """Two slides' features, thresholds and labels (S1 inferred, S2 not) and the manifest."""
    layout = DataLayout(tmp_path / "data")
    rules = RuleSet(sql=read_sql(DEFAULT_RULES_SQL))
    for i, slide_id in enumerate(SLIDES):
        features = _features(slide_id, 240 + 60 * i, seed=5 + i)
        thresholds = slide_thresholds(slide_id, features, parse_thresholds_csv(""),
                                      AutoThresholdParams())
        write_slide_partition(layout.features_dir, slide_id, features)
        write_slide_partition(layout.thresholds_dir, slide_id, thresholds)
        write_slide_partition(layout.labels_dir, slide_id,
                              label_slide(slide_id, features, thresholds, rules, CLASS_INDEX))
    s1 = read_slide_partition(layout.features_dir, "S1")["nucleus_id"].to_numpy()
    probabilities = np.random.default_rng(9).dirichlet(np.ones(len(CELL_TYPES)), len(s1))
    write_slide_partition(layout.inference_dir, "S1",
                          inference_frame("S1", s1, probabilities.astype(np.float32), [0, 1]))
    rows = [{"slide_id": s, "patient_id": p, "site": site, "condition": c,
             "path": f"/x/{s}.tif", "mpp": 0.5, "content_sha256": "0"}
            for s, (p, site, c) in SLIDES.items()]
    manifest = pl.DataFrame(rows).with_columns(  # columns this test does not use: empty
        [pl.lit(None, t).alias(c) for c, t in MANIFEST_SCHEMA.items() if c not in rows[0]])
    write_manifest(manifest, layout.manifest_parquet)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", list(SLIDES))
    return layout, instance


def _materialise(layout: DataLayout, instance: dg.DagsterInstance) -> None:
    resources = {"data_root": DataRoot(root=str(layout.root)),
                 "slide_inputs": SlideInputs(settle_seconds=0.0)}
    for slide_id in SLIDES:
        result = dg.materialize([nucleus_anndata], partition_key=slide_id, instance=instance,
                                resources=resources)
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
    assert dg.materialize([nucleus_anndata, cohort_anndata], selection=[cohort_anndata],
                          instance=instance, resources=resources).success


def _expected_obs(layout: DataLayout, slide_id: str) -> pl.DataFrame:
    labels = read_slide_partition(layout.labels_dir, slide_id)
    return read_slide_partition(layout.features_dir, slide_id).select("nucleus_id").join(
        labels, on="nucleus_id", how="left", maintain_order="left")


def test_slide_files_hold_the_parquet_values(stage) -> None:
    layout, instance = stage
    _materialise(layout, instance)
    for slide_id, (patient, site, condition) in SLIDES.items():
        adata = ad.read_h5ad(layout.anndata_slide(slide_id))
        features = read_slide_partition(layout.features_dir, slide_id)
        thresholds = read_slide_partition(layout.thresholds_dir, slide_id)
        stains = dict(thresholds.select("stain_key", "stain").iter_rows())
        assert sorted(adata.var_names) == sorted(stains.values())
        for key, stain in stains.items():
            np.testing.assert_array_equal(adata[:, stain].X.ravel(),
                                          features[f"mean_{key}"].to_numpy())
        want = _expected_obs(layout, slide_id)
        assert list(adata.obs_names) == [str(i) for i in features["nucleus_id"]]
        assert adata.obs["nucleus_id"].tolist() == features["nucleus_id"].to_list()
        assert adata.obs["label"].tolist() == features["label"].to_list()
        got_type = adata.obs["cell_type"].astype(object)
        assert [None if pd.isna(v) else v for v in got_type] == want["cell_type"].to_list()
        step = adata.obs["excluded_at_step"]
        assert [None if pd.isna(v) else int(v) for v in step] == \
            want["excluded_at_step"].to_list()
        assert list(adata.obs["cell_type"].cat.categories) == list(CELL_TYPES)
        assert set(adata.obs["threshold_version"]) == set(thresholds["threshold_version"])
        assert (adata.obs[["slide_id", "patient_id", "site", "condition"]].drop_duplicates()
                .values.tolist() == [[slide_id, patient, site, condition]])
        np.testing.assert_array_equal(
            adata.obsm["spatial"], features.select("centroid_x_um", "centroid_y_um").to_numpy())
        gates = adata.uns["thresholds"].set_index("markers")[slide_id]
        for stain, threshold in thresholds.select("stain", "threshold").iter_rows():
            assert gates[stain] == threshold
        assert adata.uns["threshold_version"][slide_id] == thresholds["threshold_version"][0]
    s1 = ad.read_h5ad(layout.anndata_slide("S1"))
    inferred = read_slide_partition(layout.inference_dir, "S1")
    assert s1.obs["predicted_cell_type"].astype(str).tolist() == \
        inferred["predicted_cell_type"].to_list()
    np.testing.assert_array_equal(s1.obs["predicted_probability"].to_numpy(),
                                  inferred["probability"].to_numpy())
    s2 = ad.read_h5ad(layout.anndata_slide("S2"))
    assert s2.obs["predicted_cell_type"].isna().all()
    assert "Ki67" in s1.var_names and "Ki67" not in s2.var_names


def test_cohort_file_stacks_the_slides_with_the_union_of_stains(stage) -> None:
    layout, instance = stage
    _materialise(layout, instance)
    cohort = ad.read_h5ad(layout.anndata_cohort)
    slides = {s: ad.read_h5ad(layout.anndata_slide(s)) for s in SLIDES}
    assert cohort.n_obs == sum(a.n_obs for a in slides.values())
    assert list(cohort.obs["slide_id"].cat.categories) == ["S1", "S2"]
    for slide_id, adata in slides.items():
        part = cohort[cohort.obs["slide_id"] == slide_id]
        assert list(part.obs_names) == list(adata.obs_names)
        np.testing.assert_array_equal(part[:, list(adata.var_names)].X, adata.X)
        np.testing.assert_array_equal(part.obsm["spatial"], adata.obsm["spatial"])
    s2_ki67 = cohort[cohort.obs["slide_id"] == "S2", "Ki67"].X
    assert np.isnan(s2_ki67).all()
    gates = cohort.uns["thresholds"].set_index("markers")
    assert list(gates.columns) == ["S1", "S2"] and np.isnan(gates.loc["Ki67", "S2"])
    assert gates.loc["CD45", "S2"] == slides["S2"].uns["thresholds"].set_index(
        "markers").loc["CD45", "S2"]


def test_a_slide_missing_from_the_manifest_is_named(stage) -> None:
    layout, _ = stage
    features = read_slide_partition(layout.features_dir, "S1")
    with pytest.raises(SlideInputError, match="'S1' is not in the slide manifest"):
        nucleus_table("S1", features, read_slide_partition(layout.labels_dir, "S1"),
                      read_slide_partition(layout.thresholds_dir, "S1"), None)
    with pytest.raises(SlideInputError, match="re-materialise nucleus_labels"):
        nucleus_table("S1", features, read_slide_partition(layout.labels_dir, "S1").head(10),
                      read_slide_partition(layout.thresholds_dir, "S1"), {"patient_id": "P1"})
