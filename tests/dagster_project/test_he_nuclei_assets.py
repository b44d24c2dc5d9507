"""he_nucleus_model: trains on the stores' virtual H&E and MxIF masks, writes a loadable model."""

import dagster as dg
import numpy as np
import pytest

from dagster_project.defs.he_nuclei.assets import HeNucleusModelConfig, he_nucleus_model
from dagster_project.resources import DataRoot
from pipelines.segment.he_learned import HeLearnedSegmenter, HeModel
from pipelines.segment.he_pairs import synthetic_he_pairs
from pipelines.synthetic.cohort import CohortParams
from storage.he_segmenter_checkpoints import he_segmenter_dir, load_he_segmenter
from storage.layout import DataLayout
from storage.mask_store import create_mask
from storage.vhe_store import VirtualHELevel, create_vhe


def _stores(layout: DataLayout) -> list[str]:
    ids = []
    for pair in synthetic_he_pairs(CohortParams(n_patients=2, n_slides=2, slide_px=160, seed=2)):
        h, w = pair.height_px, pair.width_px
        levels = [VirtualHELevel(pair.mpp, h, w, 128)]
        with create_vhe(layout.vhe_zarr(pair.slide_id), pair.slide_id, levels,
                        "beer_lambert") as writer:
            writer.write(0, 0, 0, pair.rgb.read(0, 0, h, w))
        with create_mask(layout.mask_zarr(pair.slide_id), pair.slide_id, h, w) as writer:
            writer.write(0, 0, pair.labels.read(0, 0, h, w))
        ids.append(pair.slide_id)
    return ids


def _materialise(layout: DataLayout, **config):
    return dg.materialize(
        [he_nucleus_model], resources={"data_root": DataRoot(root=str(layout.root))},
        run_config=dg.RunConfig(ops={"he_nucleus_model": HeNucleusModelConfig(**config)}),
        raise_on_error=False,
    )


def test_asset_trains_on_the_stores_and_scores_a_held_out_slide(tmp_path) -> None:
    layout = DataLayout(tmp_path / "data")
    slide_ids = _stores(layout)
    result = _materialise(layout, steps=3, crop_px=32, batch_size=2, cpu_threads=1)
    assert result.success
    meta = result.asset_materializations_for_node("he_nucleus_model")[0].metadata
    assert meta["steps"].value == 3 and meta["slides"].value == 1
    assert meta["holdout_slide"].value == slide_ids[-1]
    assert meta["holdout_nuclei"].value > 10
    assert 0.0 <= meta["holdout_f1_iou50"].value <= meta["holdout_f1_iou30"].value <= 1.0
    assert np.isfinite(meta["last_loss"].value) and meta["seconds"].value > 0
    assert (layout.figures_dir("he_nuclei") / "holdout.png").is_file()
    state, metadata = load_he_segmenter(he_segmenter_dir(layout.models_dir))
    model = HeModel.from_checkpoint(state, metadata)
    assert model.step == 3 and model.extra["slide_ids"] == slide_ids[:1]
    labels = HeLearnedSegmenter(model, "cpu").segment_rgb(np.full((40, 40, 3), 230, np.uint8),
                                                          0.5)
    assert labels.shape == (40, 40)


def test_asset_without_virtual_he_says_what_to_materialise(tmp_path) -> None:
    layout = DataLayout(tmp_path / "data")
    result = _materialise(layout, steps=1)
    assert not result.success
    failure = result.failure_data_for_node("he_nucleus_model")
    assert "materialise virtual_he and nucleus_mask first" in str(failure.error)


@pytest.mark.parametrize("profile", ["gpu"])
def test_unknown_profile_is_refused(profile) -> None:
    with pytest.raises(Exception, match="profile"):
        HeNucleusModelConfig(profile=profile)
