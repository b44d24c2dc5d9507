"""Inference on a slide: every nucleus predicted from the same patches as training, batches
regrouped across tiles, fold models averaged, the table and the map."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from pipelines.cell_types import CELL_TYPES
from pipelines.errors import ConfigurationError
from pipelines.inference import (
    EnsemblePredictor,
    InferenceParams,
    classifier_from_state,
    inference_frame,
    plan_inference,
    predict_slide,
    predicted_counts,
)
from pipelines.patches import PatchParams, extract_patches
from pipelines.torch_device import torch_threads
from pipelines.train.predict import predict_probabilities, probability_columns
from tests.inference_fixtures import MPP, fold_model
from tests.vhe_phantom import make_phantom

SLIDE = "S-inf"


@pytest.fixture(scope="module")
def slide():
    """A phantom slide as RGB (nuclei purple on pink stroma) with its nucleus table."""
    ph = make_phantom(150, 180, seed=5)
    s = {name: i for i, name in enumerate(ph.stains)}
    dapi = ph.image[s["DAPI"]] / max(1.0, float(ph.image[s["DAPI"]].max()))
    collagen = ph.image[s["Collagen"]] / max(1.0, float(ph.image[s["Collagen"]].max()))
    rgb = np.stack([255 - 120 * dapi - 20 * collagen, 255 - 190 * dapi - 90 * collagen,
                    255 - 60 * dapi - 40 * collagen], axis=-1)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    n = len(ph.centroid_y_px)
    features = pl.DataFrame({
        "nucleus_id": rng.permutation(n).astype(np.int64) * 7 + 11,  # not in label order
        "centroid_y_px": ph.centroid_y_px, "centroid_x_px": ph.centroid_x_px,
    })
    return rgb, features


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):  # small batches: threads only contend
        yield


@pytest.fixture(scope="module")
def models():
    return [fold_model(1), fold_model(2)]


def _read(rgb):
    return lambda y0, x0, y1, x1: rgb[y0:y1, x0:x1]


def _patches_in_memory(rgb, plan):
    out = np.zeros((plan.n_patches, 41, 41, 3), np.uint8)

    def write(start, images):
        out[start : start + len(images)] = images

    extract_patches(_read(rgb), plan, write, PatchParams())
    return out


def test_every_nucleus_is_predicted_from_its_training_patch(slide, models) -> None:
    rgb, features = slide
    params = InferenceParams(batch_size=37, device="cpu", tile_px=64)  # batches straddle tiles
    plan = plan_inference(SLIDE, features, *rgb.shape[:2], MPP, params)
    assert sorted(plan.nucleus_id) == sorted(features["nucleus_id"])
    assert np.all(np.diff(plan.nucleus_id) > 0)
    result = predict_slide(_read(rgb), plan, models, params)
    assert result.n_tiles > 4 and result.n_models == 2 and result.device == "cpu"

    patches = _patches_in_memory(rgb, plan)  # the training stage's cut, one tile
    per_fold = [predict_probabilities(m, patches, "cpu") for m in models]
    np.testing.assert_allclose(result.probabilities, (per_fold[0] + per_fold[1]) / 2, atol=2e-6)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert len(np.unique(result.probabilities.argmax(axis=1))) > 1

    alone = predict_slide(_read(rgb), plan, models[1:], params)
    np.testing.assert_allclose(alone.probabilities, per_fold[1], atol=2e-6)


def test_ensemble_predictor_accepts_rows_in_any_order(models) -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (30, 41, 41, 3), dtype=np.uint8)
    predictor = EnsemblePredictor(models, 30, InferenceParams(batch_size=8, device="cpu"))
    buffer = np.empty((6, 41, 41, 3), np.uint8)
    for start in (18, 0, 24, 6, 12):
        buffer[:] = images[start : start + 6]  # the caller reuses its buffer
        predictor.add(start, buffer)
    expected = np.mean([predict_probabilities(m, images, "cpu") for m in models], axis=0)
    np.testing.assert_allclose(predictor.finish(), expected, atol=2e-6)

    short = EnsemblePredictor(models, 5, InferenceParams(device="cpu"))
    short.add(0, images[:4])
    with pytest.raises(Exception, match="1 nuclei got no patch"):
        short.finish()
    with pytest.raises(ConfigurationError, match="at least one"):
        EnsemblePredictor([], 5, InferenceParams())


def test_classifier_from_state_round_trip_and_mismatch(models) -> None:
    restored = classifier_from_state(models[0].state_dict())
    x = torch.rand(3, 3, 41, 41)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), models[0](x))
    with pytest.raises(ConfigurationError, match="does not fit"):
        classifier_from_state(models[0].state_dict(), n_classes=5)


def test_inference_frame_and_counts() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]],
                     np.float32)
    full = np.zeros((4, len(CELL_TYPES)), np.float32)
    full[:, [4, 0, 13]] = probs  # fibroblast, goblet, leukocyte
    frame = inference_frame(SLIDE, np.array([5, 6, 7, 8]), full, [3, 0])
    assert frame.columns[:5] == ["nucleus_id", "slide_id", "predicted_index",
                                 "predicted_cell_type", "probability"]
    assert frame.columns[5:19] == probability_columns() and frame.columns[-1] == "models"
    assert frame["predicted_cell_type"].to_list() == ["fibroblast", "leukocyte", "goblet",
                                                      "fibroblast"]
    assert frame["predicted_index"].to_list() == [4, 13, 0, 4]
    np.testing.assert_allclose(frame["probability"], [0.7, 0.6, 0.5, 0.6])
    assert frame["models"].to_list() == [[0, 3]] * 4
    assert frame.schema["models"] == pl.List(pl.Int16)

    counts = predicted_counts(frame)
    assert counts.height == len(CELL_TYPES)
    row = counts.filter(pl.col("cell_type") == "fibroblast").row(0, named=True)
    assert row["n_nuclei"] == 2 and row["fraction"] == 0.5 and row["mean_probability"] == 0.65
    assert counts["n_nuclei"].sum() == 4
    assert counts.filter(pl.col("cell_type") == "b_cell")["n_nuclei"].item() == 0


def test_slide_without_nuclei(models) -> None:
    rgb = np.full((64, 64, 3), 230, np.uint8)
    empty = pl.DataFrame(schema={"nucleus_id": pl.Int64, "centroid_y_px": pl.Float64,
                                 "centroid_x_px": pl.Float64})
    plan = plan_inference(SLIDE, empty, 64, 64, MPP)
    result = predict_slide(_read(rgb), plan, models, InferenceParams(device="cpu"))
    assert result.probabilities.shape == (0, len(CELL_TYPES))
    frame = inference_frame(SLIDE, result.nucleus_id, result.probabilities, [0, 1])
    assert frame.height == 0 and frame.width == 20
    assert predicted_counts(frame)["n_nuclei"].sum() == 0
