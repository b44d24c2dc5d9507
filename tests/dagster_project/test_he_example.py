"""The real-H&E example (docs/examples/real_he): its cohort file validates into the H&E run
config, and, when ../shared/data is present, its colon tiles go through the H&E chain to QuPath
GeoJSON (classified by test folds instead of the demo's, which a test does not train)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.cohort_config import CohortConfigError, load_cohort_config, run_config
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
from pipelines.torch_device import torch_threads
from storage.layout import DataLayout
from storage.manifest import read_manifest
from storage.parquet_dataset import read_slide_partition
from tests.classifier_fixtures import make_store
from tests.inference_fixtures import fold_model, save_fold

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "real_he"
PROJECT = EXAMPLE.parents[2]


def test_the_cohort_file_becomes_the_he_run_config():
    config = load_cohort_config(EXAMPLE / "cohort.yaml")
    assert config.he.classifier_root == str(PROJECT / "data")
    assert config.data_root == str(PROJECT / "data_real_he")
    ops = run_config(config)["ops"]
    assert ops["he_nucleus_mask"]["config"]["backend"] == "he-classical"
    assert ops["he_nucleus_inference"]["config"] == {
        "harmonise": "reinhard", "device": "auto", "classifier_root": str(PROJECT / "data")}
    assert config.run.only[-1] == "he_nucleus_inference"


def test_the_cohort_file_selects_he_learned_and_its_weights(tmp_path):
    (tmp_path / "m.csv").write_text("slide_id,path\n")
    (tmp_path / "c.yaml").write_text(
        "manifest: m.csv\nhe: {segmentation: {backend: he-learned, model_path: w/he_learned,"
        " settings: {tta: 1}}}\n")
    mask = run_config(load_cohort_config(tmp_path / "c.yaml"))["ops"]["he_nucleus_mask"]
    assert mask["config"]["backend"] == "he-learned"
    assert mask["config"]["model_path"] == str(tmp_path / "w" / "he_learned")
    assert mask["config"]["settings"] == {"tta": 1.0}


def test_an_unknown_he_backend_is_named(tmp_path):
    (tmp_path / "m.csv").write_text("slide_id,path\n")
    (tmp_path / "c.yaml").write_text("manifest: m.csv\nhe: {segmentation: {backend: he-x}}\n")
    with pytest.raises(CohortConfigError, match=r"he\.segmentation\.backend.*he-classical"):
        load_cohort_config(tmp_path / "c.yaml")


def test_the_example_colon_tiles_reach_qupath(tmp_path):
    manifest = read_manifest(EXAMPLE / "manifest.csv", require_files=False)
    if not all(Path(p).is_file() for p in manifest["path"]):
        pytest.skip("../shared/data/real_he_colon_tiles is absent")
    assert set(manifest["modality"]) == {"he"} and manifest.height == 3
    classifier = DataLayout(tmp_path / "classifier")
    for f in (0, 1):
        save_fold(classifier, f, fold_model(30 + f))
    make_store(classifier.patch_store, {"P1": {2: 40, 5: 40, 13: 40}})
    ops = {k: v for k, v in run_config(load_cohort_config(EXAMPLE / "cohort.yaml"))["ops"].items()
           if k.startswith("he_")}
    ops["he_nucleus_inference"]["config"].update(classifier_root=str(classifier.root),
                                                 device="cpu")
    resources = {"data_root": DataRoot(root=str(tmp_path / "out")),
                 "slide_inputs": SlideInputs(manifest_path=str(EXAMPLE / "manifest.csv")),
                 "label_settings": LabelSettings()}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([slide_manifest], instance=instance, resources=resources).success
    layout = DataLayout(tmp_path / "out")
    with torch_threads(1):
        for slide_id in manifest["slide_id"][:1]:  # one tile keeps the test short
            run = dg.materialize([he_slide_image, he_nucleus_mask, he_nucleus_features,
                                  he_nucleus_inference], instance=instance,
                                 partition_key=slide_id, resources=resources,
                                 run_config={"ops": ops})
            assert run.success
            n = read_slide_partition(layout.he.inference_dir, slide_id).height
            doc = json.loads((layout.he.qupath_dir / f"{slide_id}.geojson").read_text())
            assert n >= 20 and len(doc["features"]) == n  # cellular tiles: many nuclei
