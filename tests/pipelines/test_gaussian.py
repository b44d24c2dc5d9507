"""The compiled Gaussian equals scipy's, and smoothing a window equals smoothing the whole image
away from the window's border (what tile-by-tile rendering relies on)."""

import numpy as np
import pytest
from scipy import ndimage

from pipelines.gaussian import gaussian_blur


@pytest.mark.parametrize(("sigma", "truncate"), [(3.125, 4.0), (1.0, 2.0), ((1.0, 7.0), 2.5)])
def test_equals_scipy_reflect(sigma, truncate):
    image = np.random.default_rng(0).random((97, 131), dtype=np.float32)
    expected = ndimage.gaussian_filter(image, sigma, mode="reflect", truncate=truncate)
    assert np.abs(gaussian_blur(image, sigma, truncate) - expected).max() < 1e-6


def test_smaller_than_the_kernel_mirrors_repeatedly_like_scipy():
    image = np.random.default_rng(1).random((5, 3), dtype=np.float32)
    expected = ndimage.gaussian_filter(image, 3.0, mode="reflect", truncate=4.0)
    assert np.abs(gaussian_blur(image, 3.0) - expected).max() < 1e-6


def test_window_equals_whole_image_inside_the_halo():
    image = np.random.default_rng(2).random((300, 280), dtype=np.float32)
    whole = gaussian_blur(image, 3.125, truncate=4.0)
    window = gaussian_blur(image[50:200, 40:260], 3.125, truncate=4.0)
    halo = 13  # radius of the kernel
    assert np.array_equal(window[halo:-halo, halo:-halo], whole[50 + halo : 200 - halo,
                                                                40 + halo : 260 - halo])
