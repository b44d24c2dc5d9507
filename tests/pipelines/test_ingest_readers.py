"""Each slide format reads back the exact pixels, canonical stain names and pixel size."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from pipelines.errors import SlideInputError, StainError
from pipelines.ingest import WHOLE_PLANE_BYTES, ReadParams, open_slide_source
from tests.ingest_fixtures import (
    stain_stack,
    write_multipage_tiff,
    write_ome_tiff,
    write_ome_zarr,
    write_tiff_folder,
)

RAW = ["DAPI", "CD3D", "PanKRT", "NaK ATPase", "VIM"]
CANONICAL = ("DAPI", "CD3d", "PanCK", "NaKATPase", "Vimentin")


@pytest.fixture(params=["windowed", "whole_plane"])
def read_params(request) -> ReadParams:
    """Both read paths: window by window through Zarr, and small planes decoded whole."""
    return ReadParams(whole_plane_bytes=0 if request.param == "windowed" else WHOLE_PLANE_BYTES)


def _read_all(source, tile_px: int = 128) -> np.ndarray:
    out = np.zeros(source.shape, dtype=source.dtype)
    for index, y0, x0, block in source.windows(tile_px):
        out[index, y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]] = block
    return out


@pytest.mark.parametrize("bigtiff", [False, True])
def test_ome_tiff_pyramid_reads_full_resolution(tmp_path, read_params, bigtiff):
    data = stain_stack(5, 300, 420)
    path = write_ome_tiff(tmp_path / "s.ome.tif", data, RAW, mpp=0.32, bigtiff=bigtiff,
                          pyramid_levels=2)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series[0].levels) == 3  # the pyramid is there, and ignored
    with open_slide_source(path, params=read_params) as source:
        assert source.format == "ome-tiff"
        assert source.stains == CANONICAL
        assert source.source_stains == tuple(RAW)
        assert source.mpp == pytest.approx(0.32)
        assert source.mpp_source == "image"
        assert source.shape == (5, 300, 420)
        assert source.dtype == np.uint16
        np.testing.assert_array_equal(_read_all(source), data)


def test_ome_tiff_untiled_single_stain_in_nanometres(tmp_path, read_params):
    data = stain_stack(1, 64, 80, dtype="uint8")
    path = write_ome_tiff(tmp_path / "one.ome.tif", data, ["Hoechst"], mpp=250.0, unit="nm",
                          tile=None)
    with open_slide_source(path, params=read_params) as source:
        assert source.stains == ("DAPI",)
        assert source.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(source.read(0, 10, 20, 30, 50), data[0, 10:30, 20:50])


def test_windows_are_bounded_by_tile(tmp_path, read_params):
    data = stain_stack(2, 300, 260)
    path = write_ome_tiff(tmp_path / "s.ome.tif", data, ["DAPI", "CD4"])
    with open_slide_source(path, params=read_params) as source:
        blocks = list(source.windows(128))
    assert max(b.block.size for b in blocks) == 128 * 128
    assert len(blocks) == 2 * 3 * 3
    assert sum(b.block.size for b in blocks) == data.size


@pytest.mark.parametrize("zarr_format,five_d", [(3, False), (2, True), (3, True)])
def test_ome_zarr_level0_labels_and_scale(tmp_path, zarr_format, five_d):
    data = stain_stack(3, 200, 150)
    path = write_ome_zarr(tmp_path / "s.ome.zarr", data, ["dapi", "CD11b", "Pan-Keratin"],
                          mpp=0.5, zarr_format=zarr_format, five_d=five_d)
    with open_slide_source(path) as source:
        assert source.format == "ome-zarr"
        assert source.stains == ("DAPI", "CD11B", "PanCK")
        assert source.mpp == pytest.approx(0.5)
        assert source.shape == (3, 200, 150)
        np.testing.assert_array_equal(_read_all(source, 64), data)


def test_ome_zarr_nanometre_unit_and_no_unit(tmp_path):
    data = stain_stack(1, 40, 40)
    nm = write_ome_zarr(tmp_path / "nm.zarr", data, ["DAPI"], mpp=390.625, unit="nanometer")
    with open_slide_source(nm) as source:
        assert source.mpp == pytest.approx(0.390625)
    bare = write_ome_zarr(tmp_path / "bare.zarr", data, ["DAPI"], mpp=None, unit=None)
    with pytest.raises(SlideInputError, match="mpp column"):
        open_slide_source(bare)
    with open_slide_source(bare, mpp=0.32) as source:
        assert (source.mpp, source.mpp_source) == (0.32, "manifest")


def test_ome_zarr_without_labels_is_refused(tmp_path):
    path = write_ome_zarr(tmp_path / "s.zarr", stain_stack(2, 32, 32), None)
    with pytest.raises(SlideInputError, match="label"):
        open_slide_source(path)


def test_tiff_folder_names_from_files_and_resolution_tags(tmp_path, read_params):
    data = stain_stack(3, 90, 70, dtype="uint8")
    folder = write_tiff_folder(tmp_path / "field", data, ["VIM", "Nuc", "PanKRT"], mpp=0.4)
    (folder / "notes.txt").write_text("not a stain")
    with open_slide_source(folder, params=read_params) as source:
        assert source.format == "tiff-folder"
        # sorted by file name: Nuc, PanKRT, VIM
        assert source.stains == ("Nuc", "PanCK", "Vimentin")
        assert source.mpp == pytest.approx(0.4)
        np.testing.assert_array_equal(_read_all(source, 64), data[[1, 2, 0]])


def test_tiff_folder_without_pixel_size_needs_manifest_mpp(tmp_path):
    folder = write_tiff_folder(tmp_path / "field", stain_stack(2, 32, 32, "uint8"), ["A1", "B2"])
    with pytest.raises(SlideInputError) as info:
        open_slide_source(folder)
    assert str(folder) in str(info.value) and "mpp column" in str(info.value)
    with open_slide_source(folder, mpp=0.390625) as source:
        assert source.mpp == 0.390625 and source.mpp_source == "manifest"


def test_tiff_folder_mismatched_shapes_names_both_files(tmp_path):
    folder = write_tiff_folder(tmp_path / "field", stain_stack(2, 32, 32, "uint8"), ["DAPI", "CD4"])
    tifffile.imwrite(folder / "CD8.tif", np.zeros((32, 40), np.uint8))
    with pytest.raises(SlideInputError, match=r"CD8\.tif is 32 x 40 px but CD4\.tif is 32 x 32"):
        open_slide_source(folder, mpp=0.5)


def test_tiff_folder_promotes_mixed_dtypes(tmp_path, read_params):
    folder = tmp_path / "field"
    folder.mkdir()
    tifffile.imwrite(folder / "DAPI.tif", np.full((8, 8), 200, np.uint8))
    tifffile.imwrite(folder / "CD4.tif", np.full((8, 8), 4000, np.uint16))
    with open_slide_source(folder, mpp=0.5, params=read_params) as source:
        assert source.dtype == np.uint16
        assert source.read(1, 0, 0, 8, 8).max() == 200


@pytest.mark.parametrize("how", ["pagename", "description"])
def test_multipage_tiff_names_per_page(tmp_path, read_params, how):
    data = stain_stack(3, 100, 120)
    path = write_multipage_tiff(tmp_path / "m.tif", data, ["DAPI", "CD3D", "Lyz"], how=how,
                                mpp=0.32)
    with open_slide_source(path, params=read_params) as source:
        assert source.format == "multipage-tiff"
        assert source.stains == ("DAPI", "CD3d", "Lysozyme")
        assert source.mpp == pytest.approx(0.32)
        np.testing.assert_array_equal(_read_all(source, 64), data)


def test_multipage_tiff_without_names_is_refused(tmp_path):
    path = write_multipage_tiff(tmp_path / "m.tif", stain_stack(2, 16, 16), None)
    with pytest.raises(SlideInputError, match=r"m\.tif: page\(s\) \[0, 1\] carry no stain name"):
        open_slide_source(path, mpp=0.5)


def test_duplicate_stains_after_aliasing_are_refused(tmp_path):
    names = ["DAPI", "VIM", "Vimentin"]
    path = write_ome_tiff(tmp_path / "dup.ome.tif", stain_stack(3, 16, 16), names)
    with pytest.raises(StainError) as info:
        open_slide_source(path)
    message = str(info.value)
    assert "dup.ome.tif" in message and "'VIM'" in message and "'Vimentin'" in message


def test_required_stain_missing_is_refused(tmp_path):
    path = write_ome_tiff(tmp_path / "nodapi.ome.tif", stain_stack(2, 16, 16), ["CD4", "CD8"])
    with pytest.raises(StainError, match=r"nodapi\.ome\.tif: missing stain.*DAPI"):
        open_slide_source(path, params=ReadParams(required_stains=("DAPI",)))
    with open_slide_source(path) as source:  # not required: fine
        assert source.stains == ("CD4", "CD8")


def test_missing_pixel_size_is_refused(tmp_path):
    path = write_ome_tiff(tmp_path / "nompp.ome.tif", stain_stack(1, 16, 16), ["DAPI"], mpp=None)
    with pytest.raises(SlideInputError, match=r"nompp\.ome\.tif: no pixel size.*mpp column"):
        open_slide_source(path)


def test_manifest_mpp_wins_and_disagreement_warns(tmp_path):
    path = write_ome_tiff(tmp_path / "s.ome.tif", stain_stack(1, 16, 16), ["DAPI"], mpp=0.32)
    with pytest.warns(UserWarning, match="manifest"), open_slide_source(path, mpp=0.5) as source:
        assert (source.mpp, source.mpp_source) == (0.5, "manifest")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_slide_source(path, mpp=0.32) as source:
            assert source.mpp == 0.32


def test_not_a_tiff_and_missing_path(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not a TIFF at all" * 10)
    with pytest.raises(SlideInputError, match=r"junk\.tif: not a readable TIFF"):
        open_slide_source(junk)
    with pytest.raises(SlideInputError, match="no such file"):
        open_slide_source(tmp_path / "absent.ome.tif")


def test_truncated_tiff_is_refused_at_open(tmp_path):
    names = ["DAPI", "CD4", "CD8"]
    path = write_ome_tiff(tmp_path / "cut.ome.tif", stain_stack(3, 256, 256), names)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SlideInputError, match=r"cut\.ome\.tif.*(damaged|truncated)"):
        open_slide_source(path)


def test_corrupt_tile_fails_at_read_naming_stain_and_window(tmp_path, read_params):
    data = stain_stack(2, 256, 256)
    path = write_ome_tiff(tmp_path / "bad.ome.tif", data, ["DAPI", "CD4"], tile=(128, 128))
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].pages[1]
        offset, count = page.dataoffsets[3], page.databytecounts[3]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + count] = b"\x13" * count
    path.write_bytes(bytes(raw))
    with open_slide_source(path, params=read_params) as source:
        np.testing.assert_array_equal(source.read(0, 0, 0, 256, 256), data[0])  # DAPI intact
        with pytest.raises(SlideInputError, match=r"bad\.ome\.tif: cannot read stain 'CD4'"):
            list(source.windows(128))
