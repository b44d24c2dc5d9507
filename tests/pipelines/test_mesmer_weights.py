"""Where Mesmer's weights come from, in order, and the error when there are none."""

from pathlib import Path

import pytest

from pipelines.errors import ConfigurationError
from pipelines.segment.mesmer_weights import MesmerParams
from storage.errors import ModelWeightsError
from storage.model_weights import resolve_mesmer_weights


def test_weights_resolve_in_order(tmp_path: Path) -> None:
    model = tmp_path / "MultiplexSegmentation"
    model.mkdir()
    home = tmp_path / "home"
    env = {"MESMER_MODEL_PATH": str(model), "DEEPCELL_ACCESS_TOKEN": "t"}
    assert resolve_mesmer_weights(environ=env, home=home).path == model.resolve()
    assert resolve_mesmer_weights(str(model), environ={}, home=home).source == "path"
    assert resolve_mesmer_weights(environ={"DEEPCELL_ACCESS_TOKEN": "t"}, home=home).as_params() \
        == {"weights_source": "deepcell-download", "model_path": None}
    cached = home / ".deepcell" / "models" / "MultiplexSegmentation"
    cached.mkdir(parents=True)
    found = resolve_mesmer_weights(environ={}, home=home)
    assert (found.source, found.path) == ("deepcell-cache", cached)


def test_no_weights_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelWeightsError, match=r"DEEPCELL_ACCESS_TOKEN.*\n.*non-commercial"):
        resolve_mesmer_weights(environ={}, home=tmp_path)
    with pytest.raises(ModelWeightsError, match="MESMER_MODEL_PATH"):
        resolve_mesmer_weights(environ={"MESMER_MODEL_PATH": str(tmp_path / "x")}, home=tmp_path)


def test_params_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="tile_px"):
        MesmerParams(tile_px=0)
