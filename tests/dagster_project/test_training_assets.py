"""The classifier stage end to end on a tiny data root: folds, two trained folds, the report."""

import hashlib

import dagster as dg
import numpy as np
import polars as pl
import pytest

from dagster_project.defs.training.assets import (
    classifier,
    classifier_evaluation,
    fold_split,
    fold_split_is_sound,
)
from dagster_project.partitions import fold_partitions
from dagster_project.resources import DataRoot
from storage.classifier_checkpoints import fold_dir, load_model, load_training_state
from storage.classifier_report import report_path
from storage.folds import folds_path, read_folds
from storage.layout import DataLayout
from storage.parquet_dataset import scan_dataset, write_slide_partition
from tests.classifier_fixtures import cohort_manifest, make_store

CLASSES = (2, 5, 8)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> DataLayout:
    layout = DataLayout(tmp_path_factory.mktemp("data"))
    manifest = cohort_manifest(20, seed=1)
    manifest.with_columns(
        (str(layout.cohort_dir) + "/slides/" + pl.col("slide_id") + ".ome.tif").alias("path"),
        pl.lit(0.32).alias("mpp"),
        pl.col("slide_id").map_elements(lambda s: hashlib.sha256(s.encode()).hexdigest(),
                                        return_dtype=pl.Utf8).alias("content_sha256"),
    ).write_parquet(layout.manifest_parquet)
    slides = {s: {c: 12 + 3 * i for i, c in enumerate(CLASSES)} for s in manifest["slide_id"]}
    store = make_store(layout.patch_store, slides)
    rng = np.random.default_rng(0)
    for slide_id in list(slides)[:: 2]:  # features (centroids) for half of the slides
        n = store.slide(slide_id).n_patches
        write_slide_partition(layout.features_dir, slide_id, pl.DataFrame({
            "nucleus_id": store.slide(slide_id).nucleus_id,
            "centroid_y_um": rng.random(n) * 300, "centroid_x_um": rng.random(n) * 300}))
    return layout


def test_assets_are_wired_to_folds_and_the_gpu_pool() -> None:
    assert classifier.partitions_def == fold_partitions
    assert classifier.op.pool == "gpu"
    deps = {d.asset_key.to_user_string(): d for d in classifier.specs_by_key[
        dg.AssetKey("classifier")].deps}
    assert isinstance(deps["nucleus_patches"].partition_mapping, dg.AllPartitionMapping)
    assert set(deps) == {"fold_split", "nucleus_patches"}
    assert classifier_evaluation.partitions_def is None


def test_folds_training_and_report(data_root: DataLayout) -> None:
    resources = {"data_root": DataRoot(root=str(data_root.root))}
    result = dg.materialize([fold_split], resources=resources)
    assert result.success
    folds = read_folds(folds_path(data_root.root))
    assert folds.height == 100 and folds["fold"].n_unique() == 5
    check = dg.materialize([fold_split, fold_split_is_sound], resources=resources,
                           selection=dg.AssetSelection.checks_for_assets(fold_split))
    assert all(c.passed for c in check.get_asset_check_evaluations())

    config = {"ops": {"classifier": {"config": {
        "profile": "demo", "steps": 4, "batch_size": 8, "device": "cpu"}}}}
    for fold in ("0", "1"):
        run = dg.materialize([classifier], resources=resources, partition_key=fold,
                             run_config=config)
        assert run.success
        meta = run.get_asset_materialization_events()[0].materialization.metadata
        assert meta["steps"].value == 4 and meta["best_step"].value == 4
        assert "| helper_t |" in meta["test_metrics"].value
        assert "| predicted |" in meta["test_metrics"].value
        assert meta["train_class_counts"].value["stromal"] > 0
        state, info = load_model(fold_dir(data_root.models_dir, int(fold)))
        assert info["fold"] == int(fold) and "fc.weight" in state
        assert load_training_state(fold_dir(data_root.models_dir, int(fold))) is None
    predictions = scan_dataset(data_root.predictions_dir).collect()
    tests = folds.filter((pl.col("role") == "test") & pl.col("fold").is_in([0, 1]))
    assert set(predictions["slide_id"].str.split("-").list.first()) == set(tests["patient_id"])
    assert predictions.filter(pl.col("class_index") >= 0).height == predictions.height
    assert np.allclose(predictions.select(pl.sum_horizontal(pl.col("^prob_.*$"))).to_series(),
                       1.0, atol=1e-4)

    run = dg.materialize([classifier_evaluation], resources=resources)
    assert run.success
    text = report_path(data_root.reports_dir).read_text()
    assert "synthetic demo cohort" in text
    assert "| fibroblast |" in text and "2 of 5" in text
    assert "sample standard deviation (ddof = 1)" in text and "95 % Wilson interval" in text
    meta = run.get_asset_materialization_events()[0].materialization.metadata
    header = meta["per_class"].value.splitlines()[0]
    assert "predicted per fold" in header and "pooled PPV [95 % CI]" in header
    assert header in text  # the Dagster preview and the report print the same table
    # no class is flagged above the PPV cut-off on folds with fewer than 20 predicted nuclei
    for line in text.splitlines():
        if line.startswith("| ") and line.count("|") == 11 and "| yes |" in line:
            per_fold = line.split("|")[5].split("/")
            assert min(int(v) for v in per_fold) >= 20, line
    for name in ("fig3_accuracy.png", "fig4_ppv_npv_prevalence.png", "fig5_slide_maps.png",
                 "confusion_matrix.png", "validation_loss.png"):
        assert f"classifier/{name}" in text
        assert (data_root.reports_dir / "classifier" / name).stat().st_size > 5000
