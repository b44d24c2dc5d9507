"""he-learned: trains on the project's own pairs, stores and reloads, segments tiled H&E."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from pipelines.errors import ConfigurationError
from pipelines.segment.he_learned import (
    CropSampler,
    HeLearnedSegmenter,
    HeModel,
    HeTrainParams,
    he_train_profile,
    resize_labels,
    train_he_segmenter,
)
from pipelines.segment.he_tiling import segment_he_array
from storage.errors import StoreLayoutError
from storage.he_segmenter_checkpoints import load_he_segmenter, save_he_segmenter
from tests.he_learned_fixtures import tiny_pairs, tiny_params

TINY = tiny_params(steps=30)


@pytest.fixture(scope="module")
def pairs():
    return tiny_pairs()


@pytest.fixture(scope="module")
def trained(pairs):
    return train_he_segmenter(pairs, TINY)


def test_pairs_are_virtual_he_with_mxif_nuclei(pairs) -> None:
    pair = pairs[0]
    rgb, labels = pair.rgb.read(0, 0, 160, 160), pair.labels.read(0, 0, 160, 160)
    assert rgb.shape == (160, 160, 3) and rgb.dtype == np.uint8 and pair.mpp == 0.32
    assert len(np.unique(labels)) > 10
    # Nuclei are where the hematoxylin is: darker than the rest of the virtual section.
    assert rgb[labels > 0].mean() < rgb[labels == 0].mean() - 20


def test_crops_are_at_the_network_pixel_size_and_labels_follow(pairs) -> None:
    params = HeTrainParams(crop_px=64, scale=(1.0, 1.0), augment=TINY.augment)
    sampler = CropSampler(pairs, params, np.random.default_rng(0))
    images, targets = sampler.batch()
    assert images.shape == (8, 6, 64, 64) and targets.shape == (8, 2, 64, 64)
    # 64 px at 0.5 µm/px from 100 px at 0.32 µm/px: nuclei keep their share, sides x 0.64.
    src = pairs[0].labels.read(0, 0, 100, 100)
    small = resize_labels(src, 64, 64)
    ratio = (small > 0).mean() / (src > 0).mean()
    assert ratio == pytest.approx(1.0, abs=0.08)
    sizes = np.bincount(small.ravel())[1:]
    src_sizes = np.bincount(src.ravel())[1:]
    assert np.median(sizes[sizes > 0]) == pytest.approx(
        np.median(src_sizes[src_sizes > 0]) * 0.64**2, rel=0.25)


def test_training_lowers_the_loss_and_records_the_run(trained, pairs) -> None:
    model, log = trained
    assert log.steps == [10, 20, 30] and len(log.loss) == 3
    assert log.loss[-1] < 0.9 * log.loss[0]
    assert model.step == 30 and model.mpp == 0.5
    assert model.extra["slide_ids"] == [p.slide_id for p in pairs]
    assert set(log.parts[0]) == {"foreground_bce", "foreground_dice", "core_bce", "core_dice"}


def test_checkpoint_round_trip_gives_the_same_maps(trained, pairs, tmp_path) -> None:
    model, _ = trained
    path = save_he_segmenter(tmp_path / "he_learned", model.state_dict, model.metadata())
    state, metadata = load_he_segmenter(path)
    again = HeModel.from_checkpoint(state, metadata, source=str(path))
    assert again.unet == model.unet and again.post == model.post and again.mpp == 0.5
    rgb = pairs[1].rgb.read(0, 0, 96, 96)
    first = HeLearnedSegmenter(model, "cpu").maps(rgb, 0.32)
    second = HeLearnedSegmenter(again, "cpu").maps(rgb, 0.32)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (2, 96, 96) and first.min() >= 0.0 and first.max() <= 1.0


def test_missing_weights_say_what_to_do(tmp_path) -> None:
    with pytest.raises(StoreLayoutError, match="he_nucleus_model"):
        load_he_segmenter(tmp_path / "models" / "he_learned")
    with pytest.raises(ConfigurationError, match="retrain"):
        HeModel.from_checkpoint({}, {"mpp": 0.5}, source="x")


def test_labels_land_on_the_input_grid_at_any_pixel_size(trained, pairs) -> None:
    segmenter = HeLearnedSegmenter(trained[0], "cpu")
    rgb = pairs[0].rgb.read(0, 0, 80, 120)
    for mpp in (0.25, 0.32, 0.5, 1.0):
        labels = segmenter.segment_rgb(rgb, mpp)
        assert labels.shape == (80, 120) and labels.dtype == np.int32
    assert segmenter.halo_for(0.25) == 2 * segmenter.halo_for(0.5)


def test_tiles_stitch_into_whole_unsplit_nuclei(trained, pairs) -> None:
    segmenter = HeLearnedSegmenter(trained[0], "cpu")
    rgb = pairs[1].rgb.read(0, 0, 160, 160)
    whole = segment_he_array(rgb, 0.32, segmenter, tile_px=256)
    single = segmenter.segment_rgb(rgb, 0.32)
    np.testing.assert_array_equal(whole > 0, single > 0)
    tiled = segment_he_array(rgb, 0.32, segmenter, tile_px=64, halo_px=24)
    ids = np.unique(tiled[tiled > 0])
    assert ids.tolist() == list(range(1, ids.size + 1))
    # No nucleus is split by a tile border: every label is one connected piece.
    pieces = [ndi.label(tiled == i)[1] for i in ids]
    assert max(pieces, default=1) == 1


def test_bad_input_is_refused_with_a_reason(trained) -> None:
    segmenter = HeLearnedSegmenter(trained[0], "cpu")
    with pytest.raises(ConfigurationError, match=r"\(h, w, 3\) uint8"):
        segmenter.segment_rgb(np.zeros((32, 32), np.uint8), 0.5)
    with pytest.raises(ConfigurationError, match="pixel size"):
        segmenter.segment_rgb(np.zeros((32, 32, 3), np.uint8), 0.0)
    with pytest.raises(ConfigurationError, match="multiple of 8"):
        HeTrainParams(crop_px=100)
    with pytest.raises(ConfigurationError, match="Unknown he-learned setting"):
        he_train_profile("demo", stepz=3)
    with pytest.raises(ConfigurationError, match="virtual_he and nucleus_mask"):
        train_he_segmenter([], TINY)


def test_profiles_differ_where_they_should() -> None:
    demo, paper = he_train_profile("demo"), he_train_profile("paper")
    assert demo.mpp == paper.mpp == 0.5
    assert paper.steps > 10 * demo.steps and paper.unet.base_channels > demo.unet.base_channels
    assert he_train_profile("demo", steps=7, batch_size=None).steps == 7
