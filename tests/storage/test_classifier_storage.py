"""Classifier files: folds table, per-fold model and training state, report and vhe overview."""

import numpy as np
import polars as pl
import pytest
import torch

from storage.classifier_checkpoints import (
    clear_training_state,
    fold_dir,
    load_model,
    load_model_metadata,
    load_training_state,
    save_model,
    save_training_state,
)
from storage.classifier_report import read_vhe_overview, report_path, write_report
from storage.errors import StoreLayoutError
from storage.folds import read_folds, write_folds
from storage.vhe_store import VirtualHELevel, create_vhe


def test_folds_round_trip(tmp_path) -> None:
    folds = pl.DataFrame({"patient_id": ["a", "b"], "fold": [0, 0], "role": ["train", "test"]})
    write_folds(tmp_path / "folds.parquet", folds)
    assert read_folds(tmp_path / "folds.parquet").equals(folds)
    with pytest.raises(StoreLayoutError, match="fold_split"):
        read_folds(tmp_path / "missing.parquet")


def test_model_and_training_state_round_trip(tmp_path) -> None:
    directory = fold_dir(tmp_path, 3)
    assert directory.name == "fold=3"
    with pytest.raises(StoreLayoutError, match="classifier asset"):
        load_model_metadata(directory)
    weights = {"fc.weight": torch.arange(6.0).reshape(2, 3)}
    save_model(directory, weights, {"best_step": 40, "best_val_loss": 0.5})
    state, meta = load_model(directory)
    assert torch.equal(state["fc.weight"], weights["fc.weight"]) and meta["best_step"] == 40
    assert load_training_state(directory) is None
    save_training_state(directory, {"step": 7, "model": weights, "best_val_loss": float("inf"),
                                    "history": [{"step": 5, "val_loss": 1.0}],
                                    "running_loss": (1.5, 2)})
    loaded = load_training_state(directory)
    assert loaded["step"] == 7 and loaded["best_val_loss"] == float("inf")
    assert loaded["running_loss"] == (1.5, 2) and loaded["history"][0]["val_loss"] == 1.0
    assert torch.equal(loaded["model"]["fc.weight"], weights["fc.weight"])
    clear_training_state(directory)
    assert load_training_state(directory) is None
    assert load_model(directory)[1]["best_val_loss"] == 0.5


def test_report_files_and_vhe_overview(tmp_path) -> None:
    path = write_report(tmp_path, "# report\n", {"a.png": b"png"},
                        {"t.csv": pl.DataFrame({"x": [1]})})
    assert path == report_path(tmp_path) and path.read_text() == "# report\n"
    assert (tmp_path / "classifier" / "a.png").read_bytes() == b"png"
    assert (tmp_path / "classifier" / "t.csv").read_text().splitlines() == ["x", "1"]

    assert read_vhe_overview(tmp_path / "none.zarr") is None
    store = tmp_path / "s.zarr"
    levels = [VirtualHELevel(0.32, 64, 80, 64), VirtualHELevel(0.5, 41, 51, 64)]
    half = np.zeros((41, 51, 3), np.uint8)
    half[..., 0] = np.arange(51)
    with create_vhe(store, "s", levels, "test") as writer:
        writer.write(0, 0, 0, np.full((64, 80, 3), 7, np.uint8))
        writer.write(1, 0, 0, half)
    rgb, mpp = read_vhe_overview(store)
    assert mpp == 0.5 and np.array_equal(rgb, half)
    rgb, mpp = read_vhe_overview(store, max_px=20)
    assert mpp == pytest.approx(1.5) and np.array_equal(rgb, half[::3, ::3])
