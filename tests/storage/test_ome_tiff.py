"""OME-TIFF slides: stain names, pixel size, tiling, compression, pyramid, bad files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipelines.stains import COLON_PANEL
from storage.errors import StorageError
from storage.ome_tiff import read_ome_tiff, read_ome_tiff_info, write_ome_tiff


@pytest.fixture()
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(27, 300, 520), dtype=np.uint16)


def test_round_trip_with_27_named_stains_and_pixel_size(tmp_path: Path, image) -> None:
    path = write_ome_tiff(tmp_path / "s1.ome.tif", image, COLON_PANEL, 0.32)
    info = read_ome_tiff_info(path)
    assert info.stains == COLON_PANEL
    assert info.mpp == pytest.approx(0.32)
    assert (info.height_px, info.width_px, info.dtype, info.levels) == (300, 520, "uint16", 1)
    assert np.array_equal(read_ome_tiff(path), image)
    with tifffile.TiffFile(path) as tif:  # plain tifffile sees an OME series
        assert tif.is_ome
        series = tif.series[0]
        assert series.shape == (27, 300, 520) and series.axes == "CYX"
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert page.compression == tifffile.COMPRESSION.ZSTD
        assert "PhysicalSizeX=\"0.32\"" in tif.ome_metadata
    assert not list(tmp_path.glob(".*tmp-*"))


def test_same_inputs_same_bytes(tmp_path: Path, image) -> None:
    a = write_ome_tiff(tmp_path / "a" / "s.ome.tif", image, COLON_PANEL, 0.32)
    b = write_ome_tiff(tmp_path / "b" / "s.ome.tif", image, COLON_PANEL, 0.32)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_pyramid_keeps_full_resolution_first(tmp_path: Path, image) -> None:
    path = write_ome_tiff(tmp_path / "p.ome.tif", image, COLON_PANEL, 0.32, pyramid_levels=2,
                          tile_px=128, compression="zlib", level=6, predictor=False)
    info = read_ome_tiff_info(path)
    assert info.levels == 3 and info.mpp == pytest.approx(0.32)
    assert np.array_equal(read_ome_tiff(path), image)
    with tifffile.TiffFile(path) as tif:
        shapes = [level.shape for level in tif.series[0].levels]
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert shapes == [(27, 300, 520), (27, 150, 260), (27, 75, 130)]


def test_non_ascii_names_and_other_units(tmp_path: Path) -> None:
    img = np.zeros((2, 32, 32), dtype=np.uint16)
    path = write_ome_tiff(tmp_path / "u.ome.tif", img, ["Ki67 α", "DAPI"], 0.25, tile_px=16)
    assert read_ome_tiff_info(path).stains == ("Ki67 α", "DAPI")
    assert read_ome_tiff_info(path).mpp == pytest.approx(0.25)
    nm = tmp_path / "nm.ome.tif"
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    xml = xml.replace('PhysicalSizeX="0.25" PhysicalSizeXUnit="&#181;m"',
                      'PhysicalSizeX="500" PhysicalSizeXUnit="nm"')
    tifffile.imwrite(nm, img, description=xml, metadata=None)
    assert read_ome_tiff_info(nm).mpp == pytest.approx(0.5)


def test_bad_files_raise_storage_errors(tmp_path: Path, image) -> None:
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, image[:2])
    with pytest.raises(StorageError, match="no OME-XML"):
        read_ome_tiff_info(plain)
    broken = tmp_path / "broken.ome.tif"
    broken.write_bytes(b"II*\x00garbage")
    with pytest.raises(StorageError, match=r"broken\.ome\.tif"):
        read_ome_tiff_info(broken)
    with pytest.raises(StorageError, match="stain names"):
        write_ome_tiff(tmp_path / "x.ome.tif", image, COLON_PANEL[:5], 0.32)
    assert not (tmp_path / "x.ome.tif").exists()
