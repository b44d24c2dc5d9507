"""Real H&E readers: formats, pixel size from each kind of metadata, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipelines.errors import SlideInputError
from pipelines.he_ingest import open_he_source, patch_level_grid, stream_he
from pipelines.patches import resample_rgb
from tests.he_fixtures import synthetic_he


def _field(height: int = 300, width: int = 260, mpp: float = 0.25) -> np.ndarray:
    return synthetic_he(height, width, mpp, n_nuclei=12, seed=4)[0]


def test_tiled_ome_tiff_windows_and_pixel_size(tmp_path):
    rgb = _field()
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(64, 64),
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})
    with open_he_source(path) as source:
        assert (source.format, source.mpp, source.mpp_source) == ("ome-tiff", 0.25, "image")
        assert (source.height_px, source.width_px) == (300, 260)
        assert np.array_equal(source.read(70, 30, 200, 131), rgb[70:200, 30:131])


def test_pyramidal_svs_mpp_from_the_description(tmp_path):
    rgb = _field()
    path = tmp_path / "s.svs"
    description = ("Aperio Image Library v12.0.15\n260x300 -> 260x300 JPEG/RGB Q=70"
                   "|AppMag = 40|MPP = 0.2520")
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb, photometric="rgb", tile=(64, 64), description=description)
        tif.write(rgb[::4, ::4], photometric="rgb", description="Aperio thumbnail")
    with open_he_source(path) as source:
        assert source.format == "svs" and source.mpp == pytest.approx(0.252)
        assert np.array_equal(source.read(0, 0, 300, 260), rgb)


def test_planar_tiff_resolution_tags(tmp_path):
    rgb = _field()
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate",
                     resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    with open_he_source(path) as source:
        assert source.mpp == pytest.approx(0.5)
        assert np.array_equal(source.read(10, 20, 40, 60), rgb[10:40, 20:60])


def test_png_needs_a_pixel_size_from_the_manifest(tmp_path):
    rgb = _field()
    path = tmp_path / "field.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(SlideInputError, match="Add an mpp column"):
        open_he_source(path)
    with open_he_source(path, mpp=0.5) as source:
        assert source.mpp_source == "manifest" and np.array_equal(source.read(0, 0, 300, 260), rgb)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(
        tmp_path / "rgba.png")
    with open_he_source(tmp_path / "rgba.png", mpp=0.5) as source:  # alpha dropped
        assert np.array_equal(source.read(0, 0, 300, 260), rgb)


def test_bad_input_is_refused_with_what_to_do(tmp_path):
    grey = tmp_path / "grey.tif"
    tifffile.imwrite(grey, np.zeros((64, 64), np.uint8))
    with pytest.raises(SlideInputError, match="not an RGB H&E image"):
        open_he_source(grey, mpp=0.5)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(SlideInputError, match="greyscale"):
        open_he_source(tmp_path / "grey.png", mpp=0.5)
    deep = tmp_path / "deep.tif"
    tifffile.imwrite(deep, np.zeros((64, 64, 3), np.uint16), photometric="rgb")
    with pytest.raises(SlideInputError, match="8-bit"):
        open_he_source(deep, mpp=0.5)
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, _field(), photometric="rgb", tile=(64, 64))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(SlideInputError, match="truncated"):
        open_he_source(cut, mpp=0.5)
    Image.fromarray(_field()).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideInputError, match="damaged or truncated"):
        open_he_source(tmp_path / "cut.png", mpp=0.5)
    with pytest.raises(SlideInputError, match="mpp"):
        open_he_source(tmp_path / "whole.png", mpp=1e-7)  # metres, not µm


def test_streaming_writes_both_levels_as_one_resampling(tmp_path):
    rgb = _field(300, 260, 0.25)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(64, 64))
    grid = patch_level_grid(0.25)
    levels = [np.zeros_like(rgb), np.zeros((grid.dst_size(300), grid.dst_size(260), 3), np.uint8)]

    def write(level, y0, x0, block):
        levels[level][y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]] = block

    with open_he_source(path, mpp=0.25) as source:
        summary = stream_he(source, write, tile_px=100, grid=grid)
    assert np.array_equal(levels[0], rgb)
    assert np.array_equal(levels[1], resample_rgb(rgb, grid))
    absorbs = (-np.log((rgb.astype(np.float64) + 1) / 256)).mean(axis=-1) > 0.1
    assert summary.n_tiles == 9 and summary.tissue_fraction == pytest.approx(absorbs.mean())
    assert summary.tissue_fraction > 0.9
    white = tmp_path / "white.png"
    Image.fromarray(synthetic_he(128, 128, 0.5, 0, tissue=False)[0]).save(white)
    with open_he_source(white, mpp=0.5) as source:
        assert stream_he(source, lambda *a: None, 64).tissue_fraction == 0.0
