"""The real-H&E chain on a data root: manifest modality -> he_slides partitions -> ingest ->
he-classical -> features -> classification by the trained folds -> Parquet, map, QuPath GeoJSON,
kept apart from every MxIF dataset and view; and what a bad slide gives."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import tifffile
from PIL import Image

from dagster_project.defs.he import wiring
from dagster_project.defs.he.assets import (
    he_nucleus_features,
    he_nucleus_inference,
    he_nucleus_mask,
    he_slide_image,
)
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.defs.slides.assets import slide_manifest
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.resources import DataRoot
from pipelines.cell_types import CELL_TYPES
from pipelines.labels import empty_positivity_view_sql
from pipelines.segment.quality import match_score
from pipelines.stains import RULE_STAINS, stain_key
from pipelines.torch_device import torch_threads
from pipelines.train.predict import predict_probabilities, probability_columns
from storage.catalog import build_catalog, project_catalog_spec, query_catalog
from storage.layout import DataLayout
from storage.manifest import ManifestError
from storage.mask_store import open_mask
from storage.parquet_dataset import read_slide_partition
from tests.classifier_fixtures import make_store
from tests.he_fixtures import synthetic_he
from tests.inference_fixtures import fold_model, save_fold

CHAIN = [he_slide_image, he_nucleus_mask, he_nucleus_features, he_nucleus_inference]
MPP = 0.5


def _resources(root: Path, manifest: Path) -> dict:
    return {"data_root": DataRoot(root=str(root)),
            "slide_inputs": SlideInputs(manifest_path=str(manifest)),
            "label_settings": LabelSettings()}


def _config(classifier: Path, harmonise: str = "reinhard") -> dict:
    return {"ops": {"he_slide_image": {"config": {"tile_px": 128}},
                    "he_nucleus_mask": {"config": {"tile_px": 128}},
                    "he_nucleus_inference": {"config": {
                        "device": "cpu", "harmonise": harmonise,
                        "classifier_root": str(classifier)}}}}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Two H&E slides (a field with 30 nuclei, an empty glass slide) beside one MxIF row;
    folds 0 and 1 and their training patches in another data root."""
    root = tmp_path_factory.mktemp("he")
    rgb, truth = synthetic_he(240, 300, MPP, n_nuclei=30, seed=11)
    tifffile.imwrite(root / "field.ome.tif", rgb, photometric="rgb", tile=(64, 64),
                     metadata={"axes": "YXS", "PhysicalSizeX": MPP, "PhysicalSizeY": MPP})
    Image.fromarray(synthetic_he(160, 160, MPP, 0, tissue=False)[0]).save(root / "glass.png")
    (root / "mxif.ome.tif").write_bytes(b"")  # listed, never read by the H&E chain
    manifest = root / "manifest.csv"
    manifest.write_text("slide_id,path,mpp,modality\nHE1,field.ome.tif,,he\n"
                        f"GLASS,glass.png,{MPP},HE\nMX1,mxif.ome.tif,0.32,\n")
    classifier = DataLayout(root / "classifier")
    models = {f: fold_model(20 + f) for f in (0, 1)}
    for f, model in models.items():
        save_fold(classifier, f, model)
    make_store(classifier.patch_store, {"P1": {2: 40, 5: 40, 13: 40}})
    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(root, manifest)
    assert dg.materialize([slide_manifest], instance=instance, resources=resources).success
    runs = {}
    with torch_threads(1):
        for slide_id in ("HE1", "GLASS"):
            runs[slide_id] = dg.materialize(CHAIN, instance=instance, partition_key=slide_id,
                                            resources=resources,
                                            run_config=_config(classifier.root))
    return DataLayout(root), classifier, instance, models, rgb, truth, runs


def _meta(run, key: str) -> dict:
    events = [e for e in run.get_asset_materialization_events()
              if e.asset_key.to_user_string() == key]
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def test_he_rows_get_their_own_partitions(chain):
    _, _, instance, *_ = chain
    assert instance.get_dynamic_partitions("he_slides") == ["GLASS", "HE1"]
    assert instance.get_dynamic_partitions("slides") == ["MX1"]


def test_every_nucleus_located_and_classified_by_the_folds(chain):
    layout, classifier, _, models, rgb, truth, runs = chain
    assert runs["HE1"].success
    image = _meta(runs["HE1"], "he_slide_image")
    assert (image["mpp"], image["mpp_source"], image["format"]) == (MPP, "image", "ome-tiff")
    mask = open_mask(layout.he.mask_zarr("HE1")).read()
    score = match_score(truth, mask)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (30, 0, 0)
    features = read_slide_partition(layout.he.features_dir, "HE1")
    assert features.height == 30 and {"mean_hematoxylin", "mean_eosin"} <= set(features.columns)
    table = read_slide_partition(layout.he.inference_dir, "HE1")
    assert sorted(table["nucleus_id"]) == sorted(features["nucleus_id"])
    assert table["models"].to_list() == [[0, 1]] * 30
    inference = _meta(runs["HE1"], "he_nucleus_inference")
    assert inference["harmonise"] == "reinhard" and inference["polygons"] == 30

    # the same numbers as the fold models on 41x41 crops (0.5 µm/px: no resampling) of the
    # harmonised slide, for every nucleus whose patch lies inside it
    harmonise, _ = wiring.harmoniser_for(layout, "HE1", "reinhard", features, classifier)
    centre = np.floor(features.select("centroid_y_px", "centroid_x_px").to_numpy() + 0.5)
    inside = ((centre >= 20) & (centre < np.array(rgb.shape[:2]) - 20)).all(axis=1)
    crops = np.stack([harmonise(rgb[int(y) - 20 : int(y) + 21, int(x) - 20 : int(x) + 21])
                      for y, x in centre[inside]])
    with torch_threads(1):
        expected = np.mean([predict_probabilities(m, crops, "cpu") for m in models.values()], 0)
    got = (features.filter(pl.Series(inside)).select("nucleus_id")
           .join(table, on="nucleus_id", maintain_order="left"))
    assert got.height == inside.sum() >= 20
    np.testing.assert_allclose(got.select(probability_columns()).to_numpy(), expected,
                               atol=1e-4)


def test_qupath_geojson_and_the_catalog_keep_he_apart(chain):
    layout, *_ = chain
    doc = json.loads((layout.he.qupath_dir / "HE1.geojson").read_text())
    table = read_slide_partition(layout.he.inference_dir, "HE1")
    names = dict(zip(table["nucleus_id"].cast(str), table["predicted_cell_type"], strict=True))
    assert len(doc["features"]) == 30
    for feature in doc["features"]:
        assert feature["geometry"]["type"] == "Polygon"
        assert feature["properties"]["classification"]["name"] == names[feature["id"]]
        assert names[feature["id"]] in CELL_TYPES
    positivity = empty_positivity_view_sql(stain_key(s) for s in RULE_STAINS)
    catalog = build_catalog(layout.catalog_db, project_catalog_spec(layout, positivity))
    counts = query_catalog(catalog, "SELECT (SELECT count(*) FROM he_nucleus_inference) AS he, "
                                    "(SELECT count(*) FROM nucleus_inference) AS mxif, "
                                    "(SELECT count(*) FROM nucleus_features) AS features")
    assert counts.row(0) == (30, 0, 0)
    assert not layout.features_dir.exists() and not layout.inference_dir.exists()


def test_a_slide_without_tissue_gives_empty_valid_outputs(chain):
    layout, _, _, _, _, _, runs = chain
    run = runs["GLASS"]
    assert run.success
    check = next(c for c in run.get_asset_check_evaluations() if c.check_name == "has_tissue")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert _meta(run, "he_nucleus_mask")["n_nuclei"] == 0
    assert read_slide_partition(layout.he.inference_dir, "GLASS").height == 0
    assert json.loads((layout.he.qupath_dir / "GLASS.geojson").read_text())["features"] == []


def test_a_truncated_slide_fails_and_leaves_no_store(tmp_path):
    rgb, _ = synthetic_he(256, 256, MPP, 10, seed=1)
    tifffile.imwrite(tmp_path / "whole.tif", rgb, photometric="rgb", tile=(64, 64))
    data = (tmp_path / "whole.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"slide_id,path,mpp,modality\nCUT,cut.tif,{MPP},he\n")
    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(tmp_path, manifest)
    dg.materialize([slide_manifest], instance=instance, resources=resources)
    run = dg.materialize([he_slide_image], instance=instance, partition_key="CUT",
                         resources=resources, raise_on_error=False)
    assert not run.success
    error = run.get_step_failure_events()[0].event_specific_data.error
    failure = error.message + (error.cause.message if error.cause else "")
    assert "truncated" in failure and "cut.tif" in failure
    vhe_dir = DataLayout(tmp_path).he.vhe_zarr("CUT").parent
    assert not vhe_dir.exists() or not any(vhe_dir.iterdir())


def test_an_unknown_modality_is_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("slide_id,path,modality\nA,a.png,rgb\n")
    with pytest.raises(ManifestError, match="modality 'rgb'"):
        SlideInputs(manifest_path=str(manifest)).collect(DataLayout(tmp_path))
