"""he-learned as a registered H&E backend: built from the checkpoint he_nucleus_model writes."""

from pathlib import Path

import numpy as np
import pytest

from dagster_project.defs.he.wiring import backend_for
from pipelines.errors import ConfigurationError
from pipelines.segment.he import (
    ArrayRGBSlide,
    build_he_backend,
    he_backend_names,
    segment_he_slide,
)
from pipelines.segment.he_learned import HeLearnedSegmenter, train_he_segmenter
from storage.errors import StoreLayoutError
from storage.he_segmenter_checkpoints import he_segmenter_dir, save_he_segmenter
from storage.layout import DataLayout
from tests.he_learned_fixtures import tiny_pairs, tiny_params

TINY = tiny_params(steps=20)


@pytest.fixture(scope="module")
def trained():
    pairs = tiny_pairs()
    model, _ = train_he_segmenter(pairs, TINY)
    return model, pairs[0]


def test_registry_builds_he_learned_from_the_checkpoint(trained, tmp_path: Path) -> None:
    model, pair = trained
    folder = save_he_segmenter(tmp_path / "he_learned", model.state_dict, model.metadata())
    assert "he-learned" in he_backend_names()
    backend = build_he_backend("he-learned", {"model_path": str(folder), "device": "cpu"})
    assert backend.name == "he-learned" and backend.halo_for(0.5) == 48
    rgb = np.ascontiguousarray(pair.rgb.read(0, 0, 160, 160))
    direct = HeLearnedSegmenter(model, "cpu").segment_rgb(rgb, pair.mpp)
    stitched = np.zeros((160, 160), np.int32)
    for tile, block in segment_he_slide(ArrayRGBSlide(rgb, pair.mpp, "s"), backend,
                                        tile_px=4096):
        stitched[tile.y0:tile.y1, tile.x0:tile.x1] = block
    # One window: the registry's backend labels exactly as the model itself does.
    np.testing.assert_array_equal(stitched > 0, direct > 0)
    assert len(np.unique(stitched)) == len(np.unique(direct))


def test_chain_defaults_to_the_data_roots_checkpoint(trained, tmp_path: Path) -> None:
    model, _ = trained
    layout = DataLayout(tmp_path)
    with pytest.raises(StoreLayoutError) as missing:
        backend_for(layout, "s1", "he-learned", {"device": "cpu"}, "", None)
    message = str(missing.value)
    assert str(he_segmenter_dir(layout.models_dir)) in message
    assert "he_nucleus_model" in message
    save_he_segmenter(he_segmenter_dir(layout.models_dir), model.state_dict, model.metadata())
    backend = backend_for(layout, "s1", "he-learned", {"device": "cpu", "tta": 1.0}, "", None)
    assert isinstance(backend, HeLearnedSegmenter) and backend.tta


def test_bad_settings_are_refused_with_a_reason() -> None:
    with pytest.raises(ConfigurationError, match=r"no setting\(s\) \['sigma_um'\]"):
        build_he_backend("he-learned", {"sigma_um": 1.0})
    with pytest.raises(ConfigurationError, match=r"model_path.*he_nucleus_model"):
        build_he_backend("he-learned", {})
