"""Real H&E tile folders: every format read as (h, w, 3) uint8, bad tiles named in the error."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from storage.errors import StoreLayoutError
from storage.he_tiles import HeTileFolder, read_he_tile
from storage.png import write_rgb_png

SHARED_HE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real_he_colon_tiles"


def _rgb(seed: int, h: int = 20, w: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_jpeg_and_tiff_tiles_are_read_in_sorted_order(tmp_path):
    Image.fromarray(_rgb(0)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "sub" / "b.tif", _rgb(1))
    rgba = np.dstack([_rgb(2), np.full((20, 24), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "c.png")
    smooth = np.repeat(np.linspace(40, 220, 24, dtype=np.uint8)[None, :, None], 20, 0)
    smooth = np.repeat(smooth, 3, 2)
    Image.fromarray(smooth).save(tmp_path / "d.jpg", quality=95)
    tifffile.imwrite(tmp_path / "e.tiff", _rgb(4).astype(np.uint16) * 257)
    tifffile.imwrite(tmp_path / "f.tif", np.moveaxis(_rgb(5), -1, 0), photometric="rgb",
                     planarconfig="separate")
    (tmp_path / "notes.txt").write_text("not a tile")
    folder = HeTileFolder(tmp_path)
    assert [p.name for p in folder.paths] == ["a.png", "c.png", "d.jpg", "e.tiff", "f.tif",
                                              "b.tif"]
    assert np.array_equal(folder.read(0), _rgb(0))
    assert np.array_equal(folder.read(1), _rgb(2))  # alpha dropped
    assert np.abs(folder.read(2).astype(int) - smooth).max() <= 4  # lossy JPEG
    assert np.array_equal(folder.read(3), _rgb(4))  # 16 bit scaled back to 8
    assert np.array_equal(folder.read(4), _rgb(5))  # planar TIFF
    assert np.array_equal(folder.read(5), _rgb(1))
    assert folder.read(0) is folder.read(0)  # decoded once, then cached


def test_bad_folders_and_tiles_give_clear_errors(tmp_path):
    with pytest.raises(StoreLayoutError, match="No H&E tile folder"):
        HeTileFolder(tmp_path / "missing")
    with pytest.raises(StoreLayoutError, match="holds no H&E tiles"):
        HeTileFolder(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(StoreLayoutError, match=r"grey.png has shape \(8, 8\)"):
        read_he_tile(tmp_path / "grey.png")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(StoreLayoutError, match=r"Cannot read H&E tile .*broken\.tif"):
        read_he_tile(tmp_path / "broken.tif")


def test_png_writer_round_trips(tmp_path):
    path = write_rgb_png(tmp_path / "fig" / "x.png", _rgb(7))
    assert np.array_equal(np.asarray(Image.open(path)), _rgb(7))


@pytest.mark.skipif(not SHARED_HE.is_dir(), reason="shared real H&E tiles absent")
def test_shared_real_he_tiles_read():
    folder = HeTileFolder(SHARED_HE)
    assert len(folder) == 192
    tile = folder.read(0)
    assert tile.shape == (224, 224, 3) and tile.dtype == np.uint8
    assert 100 < tile.mean() < 250  # bright transmitted-light background, stained tissue
