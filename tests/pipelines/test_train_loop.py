"""One fold's training: it learns, keeps the best validation step, and resumes exactly."""

import warnings

import numpy as np
import pytest
import torch

from pipelines.errors import ConfigurationError
from pipelines.torch_device import select_device
from pipelines.train.loop import TrainParams, train_classifier
from pipelines.train.model import RandomInitWarning, build_classifier
from pipelines.train.predict import predict_source, prediction_frame
from pipelines.train.profiles import PROFILES, training_profile
from storage.classifier_checkpoints import load_training_state, save_training_state
from storage.patch_chunks import PatchChunkReader
from tests.classifier_fixtures import make_store

CLASSES = (0, 4, 8, 10)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    slides = {
        "train-a": {c: 60 + 20 * i for i, c in enumerate(CLASSES)},
        "train-b": {c: 40 for c in CLASSES},
        "val": {c: 20 for c in CLASSES},
        "test": {c: 30 for c in CLASSES},
    }
    return make_store(tmp_path_factory.mktemp("fold") / "patches.zarr", slides, seed=4)


def _model(seed: int = 0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return build_classifier(seed=seed)


def _sources(store, *ids):
    return [PatchChunkReader(store.slide(s)) for s in ids]


def test_a_short_cpu_run_learns_the_classes_and_keeps_the_best_step(store) -> None:
    params = TrainParams(steps=16, batch_size=16, val_interval=8, val_per_class=16,
                         reservoir_rows=64, device="cpu", seed=1)
    model = _model()
    result = train_classifier(model, _sources(store, "train-a", "train-b"),
                              _sources(store, "val"), params)
    assert [h["step"] for h in result.history] == [8, 16]
    best = min(result.history, key=lambda h: h["val_loss"])
    assert (result.best_step, result.best_val_loss) == (best["step"], best["val_loss"])
    assert result.classes_trained == list(CLASSES)
    assert result.device == "cpu" and result.precision == "float32"
    assert result.history[-1]["lr"] < 1e-4  # one-cycle annealed
    model.load_state_dict(result.best_state)
    test = store.slide("test")
    probs = predict_source(model, _sources(store, "test")[0], "cpu", batch_size=50)
    assert probs.shape == (120, 14)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = (probs.argmax(axis=1) == test.class_index).mean()
    assert accuracy > 0.7, accuracy  # chance is 0.25
    frame = prediction_frame("test", test.nucleus_id, test.class_index, test.edge, probs, 3)
    assert frame.height == 120 and frame["fold"].unique().to_list() == [3]
    assert (frame["predicted_index"].to_numpy() == probs.argmax(axis=1)).all()
    assert frame["cell_type"][0] == "goblet" and "prob_leukocyte" in frame.columns


def test_kill_and_resume_ends_with_the_same_weights(store, tmp_path) -> None:
    params = TrainParams(steps=6, batch_size=4, val_interval=3, val_per_class=4,
                         checkpoint_interval=2, reservoir_rows=16, device="cpu", seed=2)
    train, val = _sources(store, "train-a"), _sources(store, "val")
    full_model = _model()
    full = train_classifier(full_model, train, val, params)

    class Killed(Exception):
        pass

    def kill(step: int, _val: float | None) -> None:
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train_classifier(_model(), train, val, params,
                         on_checkpoint=lambda st: save_training_state(tmp_path, st),
                         on_step=kill)
    state = load_training_state(tmp_path)
    assert state["step"] == 4
    resumed_model = _model(seed=99)  # weights come from the checkpoint, not the init
    resumed = train_classifier(resumed_model, train, val, params, resume=state)
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    for key, value in full.best_state.items():
        assert torch.equal(value, resumed.best_state[key]), key
    assert resumed.history == full.history and resumed.best_step == full.best_step


def test_resume_with_other_settings_is_refused(store, tmp_path) -> None:
    params = TrainParams(steps=2, batch_size=4, val_interval=2, val_per_class=4,
                         checkpoint_interval=1, reservoir_rows=16, device="cpu")
    states = []
    train_classifier(_model(), _sources(store, "train-b"), _sources(store, "val"), params,
                     on_checkpoint=states.append)
    other = TrainParams(**{**params.__dict__, "batch_size": 8})
    with pytest.raises(ConfigurationError, match="batch_size"):
        train_classifier(_model(), _sources(store, "train-b"), _sources(store, "val"), other,
                         resume=states[0])


def test_profiles_and_device_choice() -> None:
    paper = PROFILES["paper"]
    assert (paper.steps, paper.batch_size, paper.lr, paper.augment) == (20_000, 256, 1e-3, False)
    demo = training_profile("demo", steps=10, augment=None)
    assert demo.steps == 10 and demo.batch_size == PROFILES["demo"].batch_size
    with pytest.raises(ConfigurationError, match="profile"):
        training_profile("fast")
    with pytest.raises(ConfigurationError, match="setting"):
        training_profile("demo", learning_rate=1.0)
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert select_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigurationError, match="CUDA"):
            select_device("cuda")
