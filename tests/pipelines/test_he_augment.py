"""Augmentation towards real H&E: exact dye split, stain changes where intended, labels follow."""

import numpy as np

from pipelines.segment.he_augment import DYES, HeAugmentParams, augment_he, restain

STILL = HeAugmentParams(
    hematoxylin_factor=(1.0, 1.0), nucleus_factor=(1.0, 1.0), eosin_factor=(1.0, 1.0),
    eosin_texture=(0.0, 0.0), background_hematoxylin=(0.0, 0.0), fibre_probability=0.0,
    dye_angle_deg=0.0,
)


def _tile() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    # Pink background and a purple nucleus made from the dye vectors, as the renderer does.
    amounts = np.zeros((32, 32, 3))
    amounts[..., 1] = 0.3 + 0.05 * rng.random((32, 32))
    labels = np.zeros((32, 32), np.int32)
    labels[8:20, 10:22] = 5
    amounts[labels > 0, 0] = 0.8
    rgb = np.round(255 * np.exp(-(amounts @ DYES))).astype(np.uint8)
    return rgb, labels


def test_restaining_with_unit_factors_returns_the_tile() -> None:
    rgb, labels = _tile()
    out = restain(rgb, labels, np.random.default_rng(1), STILL)
    np.testing.assert_allclose(out, rgb, atol=1.0)


def test_nucleus_hematoxylin_darkens_nuclei_only() -> None:
    rgb, labels = _tile()
    params = HeAugmentParams(**{**STILL.to_json(), "nucleus_factor": (2.0, 2.0)})
    out = restain(rgb, labels, np.random.default_rng(1), params)
    inside = labels > 0
    assert out[inside].mean() < rgb[inside].mean() - 20
    np.testing.assert_allclose(out[~inside], rgb[~inside], atol=1.0)


def test_labels_follow_flips_and_turns() -> None:
    rgb, labels = _tile()
    rgb[labels > 0] = (10, 20, 30)  # a colour nothing else has
    params = HeAugmentParams(enabled=False)
    for seed in range(6):
        out, moved = augment_he(rgb, labels, np.random.default_rng(seed), params)
        np.testing.assert_array_equal(np.all(out == (10, 20, 30), axis=-1), moved > 0)


def test_full_augmentation_changes_colours_and_stays_uint8() -> None:
    rgb, labels = _tile()
    out, moved = augment_he(rgb, labels, np.random.default_rng(3))
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert set(np.unique(moved)) == {0, 5}
    # Flips and turns keep the mean colour; re-staining and jitter change it.
    assert np.abs(out.mean(axis=(0, 1)) - rgb.mean(axis=(0, 1))).max() > 2.0
