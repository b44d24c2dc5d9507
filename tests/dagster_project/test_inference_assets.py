"""nucleus_inference on a tiny data root: every nucleus predicted as predict.py predicts the
training patches, fold models averaged, the QuPath GeoJSON, the map and the catalog views."""

from __future__ import annotations

import json
import os
import uuid

import dagster as dg
import numpy as np
import polars as pl
import pytest
from skimage.measure import points_in_poly
from upath import UPath

from dagster_project.defs.inference.assets import nucleus_inference
from dagster_project.defs.labels.assets import nucleus_catalog
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.defs.vhe.assets import nucleus_patches, virtual_he
from dagster_project.resources import DataRoot
from pipelines.cell_types import CELL_TYPES, CLASS_COLOURS
from pipelines.labels import empty_positivity_view_sql
from pipelines.stains import RULE_STAINS, stain_key
from pipelines.torch_device import torch_threads
from pipelines.train.predict import predict_probabilities, probability_columns
from storage.catalog import build_catalog, project_catalog_spec, query_catalog
from storage.folds import folds_path, write_folds
from storage.layout import DataLayout
from storage.manifest import write_manifest
from storage.parquet_dataset import read_slide_partition, write_slide_partition
from storage.patch_store import PatchStore
from tests.inference_fixtures import fold_model, save_fold, write_slide

SLIDE, NO_VHE = "P01-S1", "P02-S1"
FOLDS = (0, 2)


def _resources(root) -> dict:
    return {"data_root": DataRoot(root=str(root)), "label_settings": LabelSettings()}


def _run(assets, root, instance, partition_key=None, config=None):
    return dg.materialize(assets, instance=instance, partition_key=partition_key,
                          resources=_resources(root), run_config=config)


def _fold_config(**fields) -> dict:
    return {"ops": {"nucleus_inference": {"config": {"device": "cpu", **fields}}}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A slide with features, labels (every 5th nucleus excluded), virtual H&E, patches of
    its labelled nuclei, a catalog built before any inference, and folds 0 and 2 trained."""
    layout = DataLayout(tmp_path_factory.mktemp("data"))
    ph = write_slide(layout, SLIDE, 150, 180, seed=3)
    features = read_slide_partition(layout.features_dir, SLIDE)
    kind = ph.compartment[features["label"].to_numpy() - 1]
    class_index = np.array([2, 5, 13])[kind].astype(np.int16)
    class_index[::5] = -1
    write_slide_partition(layout.labels_dir, SLIDE, pl.DataFrame({
        "nucleus_id": features["nucleus_id"], "slide_id": SLIDE,
        "cell_type": [CELL_TYPES[c] if c >= 0 else None for c in class_index],
        "class_index": pl.Series(class_index, dtype=pl.Int16),
        "excluded_at_step": pl.Series([1 if c < 0 else None for c in class_index],
                                      dtype=pl.Int16),
        "threshold_version": "t1",
    }))
    models = {f: fold_model(10 + f) for f in FOLDS}
    for f, model in models.items():
        save_fold(layout, f, model)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", [SLIDE, NO_VHE])
    for asset in (virtual_he, nucleus_patches):
        assert _run([asset], layout.root, instance, SLIDE).success
    assert _run([nucleus_catalog], layout.root, instance).success
    with torch_threads(1):
        run = _run([nucleus_inference], layout.root, instance, SLIDE, _fold_config())
    return layout, instance, models, features, run


def _store_predictions(layout: DataLayout, models: dict, folds) -> pl.DataFrame:
    """predict.py on the training patch store's patches of the slide, averaged over folds."""
    patches = PatchStore(layout.patch_store).slide(SLIDE)
    images = patches.read_rows(0, patches.n_patches)
    with torch_threads(1):
        probs = np.mean([predict_probabilities(models[f], images, "cpu") for f in folds], axis=0)
    return pl.DataFrame({"nucleus_id": patches.nucleus_id, "expected": probs})


def test_wiring() -> None:
    spec = nucleus_inference.specs_by_key[dg.AssetKey("nucleus_inference")]
    deps = {d.asset_key.to_user_string(): d.partition_mapping for d in spec.deps}
    assert set(deps) == {"classifier", "virtual_he", "nucleus_mask", "nucleus_features"}
    assert isinstance(deps["classifier"], dg.AllPartitionMapping)
    assert nucleus_inference.partitions_def.name == "slides"
    assert nucleus_inference.op.pool is None  # slides infer side by side; folds train alone


def test_every_nucleus_gets_the_ensemble_prediction(setup) -> None:
    layout, _, models, features, run = setup
    assert run.success
    assert [c.passed for c in run.get_asset_check_evaluations()] == [True]
    meta = run.get_asset_materialization_events()[0].materialization.metadata
    assert meta["models"].value == "mean of folds 0, 2" and meta["device"].value == "cpu"
    table = read_slide_partition(layout.inference_dir, SLIDE)
    assert table.height == features.height == meta["n_nuclei"].value
    assert sorted(table["nucleus_id"]) == sorted(features["nucleus_id"])
    assert table["models"].to_list() == [[0, 2]] * table.height
    probs = table.select(probability_columns()).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(table["predicted_index"], probs.argmax(axis=1))
    assert table["predicted_cell_type"].to_list() == [CELL_TYPES[i]
                                                      for i in table["predicted_index"]]

    # labelled nuclei: the same numbers as predict.py on the training patches, fold mean
    expected = _store_predictions(layout, models, FOLDS).join(table, on="nucleus_id")
    assert expected.height == int((read_slide_partition(layout.labels_dir, SLIDE)
                                   ["class_index"] >= 0).sum()) > 0
    np.testing.assert_allclose(expected.select(probability_columns()).to_numpy(),
                               np.stack(expected["expected"].to_list()), atol=1e-5)
    assert "| cell_type | n_nuclei | fraction | mean_probability |" in meta["per_class"].value
    assert meta["polygons"].value + meta["points"].value == table.height


def test_qupath_geojson(setup) -> None:
    layout, _, _, features, _ = setup
    path = layout.qupath_dir / f"{SLIDE}.geojson"
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection"
    table = read_slide_partition(layout.inference_dir, SLIDE).join(features, on="nucleus_id")
    by_id = {str(r["nucleus_id"]): r for r in table.iter_rows(named=True)}
    assert sorted(f["id"] for f in doc["features"]) == sorted(by_id)
    polygons = 0
    for feature in doc["features"]:
        row = by_id[feature["id"]]
        props = feature["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == row["predicted_cell_type"]
        assert props["classification"]["color"] == list(CLASS_COLOURS[row["predicted_cell_type"]])
        assert props["measurements"]["probability"] == pytest.approx(row["probability"],
                                                                     abs=1e-4)
        centre = [row["centroid_x_px"] + 0.5, row["centroid_y_px"] + 0.5]
        if feature["geometry"]["type"] == "Polygon":
            polygons += 1
            ring = np.array(feature["geometry"]["coordinates"][0])
            assert points_in_poly([centre], ring)[0]
        else:
            assert feature["geometry"]["coordinates"] == pytest.approx(centre, abs=0.01)
    assert polygons == len(doc["features"])  # the halo fits every nucleus of this slide


def test_map_png(setup) -> None:
    layout, *_, run = setup
    png = layout.figures_dir("inference") / f"{SLIDE}.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
    meta = run.get_asset_materialization_events()[0].materialization.metadata
    assert meta["map"].value == str(png)
    assert meta["preview"].value.startswith("![map](data:image/png;base64,")


def test_catalog_views_inference_beside_labels(setup) -> None:
    layout, instance, _, features, _ = setup
    # the catalog was built before inference; the run turned its stand-in into the view
    n = query_catalog(layout.catalog_db, "SELECT count(*) AS n FROM nucleus_inference").item()
    assert n == features.height
    joined = query_catalog(layout.catalog_db, """
        SELECT v.nucleus_id, v.cell_type, v.agrees, v.predicted_index, l.class_index
        FROM nucleus_inference_vs_labels AS v JOIN nucleus_labels AS l USING (nucleus_id)""")
    assert joined.height == features.height
    excluded = joined.filter(pl.col("class_index") < 0)
    assert excluded.height > 0 and excluded["agrees"].null_count() == excluded.height
    kept = joined.filter(pl.col("class_index") >= 0)
    assert kept["agrees"].to_list() == (kept["class_index"] == kept["predicted_index"]).to_list()
    summary = query_catalog(layout.catalog_db, "SELECT * FROM inference_agreement_per_slide")
    assert summary.row(0, named=True)["n_predicted"] == features.height
    assert summary.row(0, named=True)["n_labelled"] == kept.height
    # a rebuilt catalog reads the dataset straight away
    assert _run([nucleus_catalog], layout.root, instance).success
    n = query_catalog(layout.catalog_db, "SELECT count(*) AS n FROM nucleus_inference").item()
    assert n == features.height


def test_catalog_builds_without_inference(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    positivity = empty_positivity_view_sql(stain_key(s) for s in RULE_STAINS)
    path = build_catalog(layout.catalog_db, project_catalog_spec(layout, positivity))
    columns = query_catalog(path, "SELECT * FROM nucleus_inference").columns
    assert columns == ["nucleus_id", "slide_id", "predicted_index", "predicted_cell_type",
                       "probability", *probability_columns(), "models"]
    assert query_catalog(path, "SELECT count(*) FROM nucleus_inference_vs_labels").item() == 0


def test_one_chosen_fold(setup) -> None:
    layout, instance, models, features, _ = setup
    with torch_threads(1):
        run = _run([nucleus_inference], layout.root, instance, SLIDE, _fold_config(fold=2))
    assert run.success
    table = read_slide_partition(layout.inference_dir, SLIDE)
    assert table.height == features.height and table["models"].to_list() == [[2]] * table.height
    expected = _store_predictions(layout, models, [2]).join(table, on="nucleus_id")
    np.testing.assert_allclose(expected.select(probability_columns()).to_numpy(),
                               np.stack(expected["expected"].to_list()), atol=1e-5)


def test_a_cohort_slide_is_predicted_by_the_fold_that_held_its_patient_out(setup) -> None:
    layout, instance, models, features, _ = setup
    manifest = pl.DataFrame({"slide_id": [SLIDE, NO_VHE], "patient_id": ["P01", "P02"],
                             "site": "ascending_colon", "condition": "normal",
                             "path": ["a.ome.tiff", "b.ome.tiff"], "mpp": 0.32,
                             "modality": "mxif", "content_sha256": "0"})

    def folds_holding_out(fold: int) -> pl.DataFrame:
        return pl.DataFrame({"patient_id": ["P01", "P02"], "fold": [fold, 1 - fold % 2],
                             "role": ["test", "test"]})

    def predict(**config) -> tuple[list, str]:
        with torch_threads(1):
            run = _run([nucleus_inference], layout.root, instance, SLIDE, _fold_config(**config))
        assert run.success
        meta = run.get_asset_materialization_events()[0].materialization.metadata
        table = read_slide_partition(layout.inference_dir, SLIDE)
        assert table.height == features.height
        return table["models"].unique().to_list(), meta["models"].value

    write_manifest(manifest, layout.manifest_parquet)
    try:
        write_folds(folds_path(layout.root), folds_holding_out(2))
        used, label = predict()
        assert used == [[2]] and label == "fold 2 (the fold that held this patient out)"
        expected = _store_predictions(layout, models, [2]).join(
            read_slide_partition(layout.inference_dir, SLIDE), on="nucleus_id")
        np.testing.assert_allclose(expected.select(probability_columns()).to_numpy(),
                                   np.stack(expected["expected"].to_list()), atol=1e-5)
        assert predict(held_out=False) == ([[0, 2]], "mean of folds 0, 2")
        assert predict(fold=0) == ([[0]], "fold 0")
        write_folds(folds_path(layout.root), folds_holding_out(4))  # fold 4 is not trained
        assert predict() == ([[0, 2]], "mean of folds 0, 2 (fold 4, which holds this "
                                       "patient out, is not trained yet)")
    finally:
        folds_path(layout.root).unlink()
        layout.manifest_parquet.unlink()
    assert predict() == ([[0, 2]], "mean of folds 0, 2")  # no split: every trained fold


def test_clear_errors(setup, tmp_path) -> None:
    layout, instance, *_ = setup
    with pytest.raises(Exception, match=r"Fold 1 has no trained classifier.*classifier "
                                        r"partition 1.*folds \(0, 2\)"):
        _run([nucleus_inference], layout.root, instance, SLIDE, _fold_config(fold=1))
    with pytest.raises(Exception, match=r"fold must be one of \[0, 1, 2, 3, 4\]"):
        _run([nucleus_inference], layout.root, instance, SLIDE, _fold_config(fold=7))
    with pytest.raises(Exception, match=f"Slide '{NO_VHE}' has no virtual H&E.*virtual_he"):
        _run([nucleus_inference], layout.root, instance, NO_VHE, _fold_config())
    empty = DataLayout(tmp_path)  # no fold trained: skipped, not failed, and it says why
    run = _run([nucleus_inference], empty.root, instance, SLIDE, _fold_config())
    assert run.success and not run.get_asset_materialization_events()
    (seen,) = [e.event_specific_data.asset_observation for e in run.all_events
               if e.event_type_value == "ASSET_OBSERVATION"]
    assert "No trained classifier fold" in seen.metadata["skipped"].value


def test_on_object_storage(tmp_path, monkeypatch) -> None:
    """The data root on a `memory://` URL: inputs, model, outputs and the refreshed catalog all
    live under it, nothing on the local disk."""
    monkeypatch.chdir(tmp_path)
    root = UPath(f"memory://inference-{uuid.uuid4().hex[:8]}/data")
    layout = DataLayout(str(root))
    try:
        write_slide(layout, SLIDE, 100, 120, seed=4)
        model = fold_model(1)
        save_fold(layout, 1, model)
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("slides", [SLIDE])
        assert _run([virtual_he], str(root), instance, SLIDE).success
        assert _run([nucleus_catalog], str(root), instance).success
        with torch_threads(1):
            run = _run([nucleus_inference], str(root), instance, SLIDE, _fold_config())
        assert run.success and all(c.passed for c in run.get_asset_check_evaluations())
        n = read_slide_partition(layout.features_dir, SLIDE).height
        assert read_slide_partition(layout.inference_dir, SLIDE)["models"].to_list() == [[1]] * n
        doc = json.loads((layout.qupath_dir / f"{SLIDE}.geojson").read_text())
        assert len(doc["features"]) == n > 0
        assert (layout.figures_dir("inference") / f"{SLIDE}.png").read_bytes()[:4] == b"\x89PNG"
        assert query_catalog(layout.catalog_db,
                             "SELECT count(*) FROM nucleus_inference").item() == n
        assert os.listdir(tmp_path) == []
    finally:
        root.fs.rm(root.path, recursive=True)
