"""Whole-slide rendering tile by tile equals rendering at once, at both levels."""

from dataclasses import dataclass

import numpy as np
import pytest

from pipelines.errors import StainError
from pipelines.patches import ResampleGrid, resample_rgb
from pipelines.vhe.beer_lambert import BeerLambertBackend
from pipelines.vhe.streaming import StreamParams, render_slide, sample_slide
from storage.tiles import tile_grid
from tests.vhe_phantom import make_phantom


@dataclass(frozen=True)
class Info:
    slide_id: str
    stains: tuple
    mpp: float
    height_px: int
    width_px: int


class MemorySlide:
    """The SlideReader interface over an array; records the largest window read."""

    def __init__(self, image, stains, mpp=0.32, slide_id="P1_S1"):
        self.image = image
        self.info = Info(slide_id, tuple(stains), mpp, image.shape[1], image.shape[2])
        self.largest_read = 0

    def read(self, y0, x0, y1, x1, stains):
        self.largest_read = max(self.largest_read, (y1 - y0) * (x1 - x0))
        stains = self.info.stains if stains is None else stains
        return self.image[[self.info.stains.index(s) for s in stains], y0:y1, x0:x1]

    def tiles(self, tile_px=None, halo_px=0):
        return tile_grid(self.info.height_px, self.info.width_px, tile_px, halo_px)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(300, 340, seed=2)


def test_tiles_equal_the_whole_slide_at_both_levels(phantom):
    slide = MemorySlide(phantom.image, phantom.stains)
    grid = ResampleGrid.between(0.32, 0.5)
    levels = [np.zeros((300, 340, 3), np.uint8),
              np.zeros((grid.dst_size(300), grid.dst_size(340), 3), np.uint8)]
    written = [np.zeros(lv.shape[:2], int) for lv in levels]

    def write(level, y0, x0, rgb):
        h, w, _ = rgb.shape
        levels[level][y0 : y0 + h, x0 : x0 + w] = rgb
        written[level][y0 : y0 + h, x0 : x0 + w] += 1

    summary, fitted = render_slide(
        slide, BeerLambertBackend(), write, StreamParams(tile_px=100, sample_pixels=20_000), grid
    )
    assert all((w == 1).all() for w in written)  # every pixel written exactly once
    whole = fitted.render(phantom.image, phantom.stains, 0.32)
    assert np.array_equal(levels[0], whole)
    assert np.array_equal(levels[1], resample_rgb(whole, grid))
    assert summary.n_tiles == 3 * 4  # tile_px 100 is already 4 grid periods of 25 px
    assert slide.largest_read <= (100 + 2 * 25) ** 2  # one tile and its halo, never the slide
    assert np.allclose(summary.mean_rgb, whole.reshape(-1, 3).mean(axis=0))


def test_calibration_sample_is_a_regular_lattice(phantom):
    slide = MemorySlide(phantom.image, phantom.stains)
    sample = sample_slide(slide, ["DAPI"], sample_pixels=1000, tile_px=64)
    step = int(np.sqrt(300 * 340 / 1000))
    assert sorted(sample[0]) == sorted(phantom.image[phantom.stains.index("DAPI"), ::step, ::step]
                                       .ravel().astype(np.float32))


def test_missing_stain_fails_before_any_pixel_is_written(phantom):
    keep = [i for i, s in enumerate(phantom.stains) if s != "SMA"]
    slide = MemorySlide(phantom.image[keep], [phantom.stains[i] for i in keep], slide_id="P9")
    calls = []
    with pytest.raises(StainError, match=r"P9.*SMA"):
        render_slide(slide, BeerLambertBackend(), lambda *a: calls.append(a))
    assert calls == [] and slide.largest_read == 0
