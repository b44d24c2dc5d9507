"""Stain harmonisation: Reinhard moves LAB statistics, Macenko recovers and swaps stain vectors."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2lab

from pipelines.errors import ConfigurationError
from pipelines.he_harmonise import fit_harmoniser, stain_vectors, tissue_pixels
from tests.he_fixtures import EOSIN_OD, HEMATOXYLIN_OD, synthetic_he


def _recoloured(rgb: np.ndarray, gain: tuple[float, float, float]) -> np.ndarray:
    """The same field under another stain intensity per channel (another lab's H&E)."""
    od = -np.log((rgb.astype(np.float64) + 1) / 256) * np.array(gain)
    return np.clip(256 * np.exp(-od) - 1, 0, 255).astype(np.uint8)


def test_reinhard_gives_the_target_lab_statistics():
    target, _ = synthetic_he(200, 200, 0.5, 25, seed=1)
    source = _recoloured(synthetic_he(200, 200, 0.5, 25, seed=2)[0], (1.5, 1.1, 1.3))
    harmonise = fit_harmoniser("reinhard", source, target)
    out = harmonise(source)
    fitted_on = (-np.log((source + 1.0) / 256)).mean(axis=-1) > 0.15  # the pixels fitted on
    lab_out = rgb2lab(out)[fitted_on]
    lab_target = rgb2lab(tissue_pixels(target)[None])[0]
    assert np.abs(lab_out.mean(axis=0) - lab_target.mean(axis=0)).max() < 2.5  # sRGB clipping
    assert np.abs(lab_out.std(axis=0) / lab_target.std(axis=0) - 1).max() < 0.1
    before = rgb2lab(source)[fitted_on]
    assert np.abs(before.mean(axis=0) - lab_target.mean(axis=0)).max() > 5


def test_macenko_finds_the_stain_vectors_and_maps_source_to_target():
    rgb, _ = synthetic_he(256, 256, 0.5, 40, seed=3)
    vectors = np.array(stain_vectors(rgb).vectors)
    for found, true in zip(vectors, (HEMATOXYLIN_OD, EOSIN_OD), strict=True):
        assert found @ true / np.linalg.norm(true) > 0.98  # cosine with the drawn vector
    source = _recoloured(rgb, (1.8, 1.8, 1.8))  # the same stains, 80 % more of each
    out = fit_harmoniser("macenko", source, rgb)(source)
    err = np.abs(out.astype(int) - rgb.astype(int)).mean()
    assert err < 4.0 and np.abs(source.astype(int) - rgb.astype(int)).mean() > 15


def test_none_and_bad_choices():
    rgb, _ = synthetic_he(64, 64, 0.5, 3, seed=0)
    assert fit_harmoniser("none", rgb, rgb) is None
    with pytest.raises(ConfigurationError, match="harmonise must be one of"):
        fit_harmoniser("cyclegan", rgb, rgb)
    glass, _ = synthetic_he(64, 64, 0.5, 0, tissue=False)
    with pytest.raises(ConfigurationError, match="tissue pixels"):
        fit_harmoniser("reinhard", glass, rgb)
