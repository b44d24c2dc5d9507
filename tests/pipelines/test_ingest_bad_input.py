"""Implausible pixel sizes and malformed OME-Zarr metadata are refused with messages that say
what is wrong (issue 16, items 3 and 7)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from pipelines.errors import SlideInputError
from pipelines.ingest import open_slide_source, resolve_mpp
from storage.pixel_size import MPP_RANGE_UM
from tests.ingest_fixtures import (
    stain_stack,
    write_ome_tiff,
    write_ome_zarr,
    write_tiff_folder,
)


def _edit_ome(path, edit) -> None:
    group = zarr.open_group(str(path), mode="r+")
    meta = dict(group.attrs["ome"])
    edit(meta)
    group.attrs["ome"] = meta


def test_pixel_size_range_has_one_home():
    assert MPP_RANGE_UM == (0.05, 50.0)


@pytest.mark.parametrize(
    "mpp, expected",
    [
        (1e-7, "in metres (m) rather than µm"),
        (math.inf, "above 50 µm per pixel"),
        (1e9, "above 50 µm per pixel"),
        (0.0, "must be > 0"),
        (-0.5, "must be > 0"),
    ],
)
def test_implausible_manifest_mpp_is_refused_at_open(tmp_path, mpp, expected):
    path = write_ome_tiff(tmp_path / "P01_S1.ome.tif", stain_stack(1, 16, 16), ["DAPI"], mpp=0.32)
    with pytest.raises(SlideInputError) as info:
        open_slide_source(path, mpp=mpp)
    message = str(info.value)
    assert "P01_S1.ome.tif" in message
    assert expected in message
    assert "between 0.05 and 50" in message


def test_image_pixel_size_in_metres_is_named_not_taken_as_none(tmp_path):
    # PhysicalSizeX written in µm but holding a value in metres.
    path = write_ome_tiff(tmp_path / "m.ome.tif", stain_stack(1, 16, 16), ["DAPI"], mpp=3.2e-7)
    with pytest.raises(SlideInputError) as info:
        open_slide_source(path)
    message = str(info.value)
    assert "states 3.2e-07 µm per pixel" in message
    assert "in metres (m) rather than µm" in message and "mpp column" in message
    with open_slide_source(path, mpp=0.32) as source:  # the manifest overrides it
        assert (source.mpp, source.mpp_source) == (0.32, "manifest")


def test_nan_manifest_mpp_means_absent_in_the_reader():
    assert resolve_mpp(Path("s.tif"), 0.4, math.nan) == (0.4, "image")
    with pytest.raises(SlideInputError, match=r"image metadata states nan|states none"):
        resolve_mpp(Path("s.tif"), math.nan, None)


@pytest.mark.parametrize(
    "multiscales, expected",
    [
        ({"datasets": [{"path": "0"}]}, "expected a list of objects"),
        (["0"], "expected a list of objects"),
        ([{"axes": [], "datasets": "0"}], "datasets must be a list of objects, each with a 'path'"),
        ([{"axes": [{"type": "space"}], "datasets": [{"path": "0"}]}], "axes must be a list"),
    ],
)
def test_malformed_multiscales_says_what_is_wrong(tmp_path, multiscales, expected):
    path = write_ome_zarr(tmp_path / "s.ome.zarr", stain_stack(1, 32, 32), ["DAPI"])
    _edit_ome(path, lambda meta: meta.update(multiscales=multiscales))
    with pytest.raises(SlideInputError) as info:
        open_slide_source(path)
    message = str(info.value)
    assert "s.ome.zarr" in message and "malformed OME-NGFF 'multiscales' metadata" in message
    assert expected in message


def test_ome_zarr_scale_of_wrong_length_is_refused(tmp_path):
    path = write_ome_zarr(tmp_path / "s.ome.zarr", stain_stack(1, 32, 32), ["DAPI"], levels=1)

    def edit(meta):
        meta["multiscales"][0]["datasets"][0]["coordinateTransformations"] = [
            {"type": "scale", "scale": [0.5, 0.5]}]

    _edit_ome(path, edit)
    with pytest.raises(SlideInputError, match=r"scale transform \[0\.5, 0\.5\] is not a list of 3"):
        open_slide_source(path)


def test_ome_zarr_negative_scale_is_named(tmp_path):
    path = write_ome_zarr(tmp_path / "neg.ome.zarr", stain_stack(1, 32, 32), ["DAPI"], mpp=-0.5,
                          levels=1)
    with pytest.raises(SlideInputError) as info:
        open_slide_source(path)
    message = str(info.value)
    assert "the OME-Zarr scale of axis 'x' is -0.5, and a pixel size must be > 0" in message
    assert "states none" not in message


def test_ome_zarr_unknown_unit_is_named(tmp_path):
    path = write_ome_zarr(tmp_path / "pc.ome.zarr", stain_stack(1, 32, 32), ["DAPI"],
                          unit="parsec", levels=1)
    with pytest.raises(SlideInputError) as info:
        open_slide_source(path)
    message = str(info.value)
    assert "axis 'x' has unit 'parsec', which is not a length unit" in message
    assert "states none" not in message
    with open_slide_source(path, mpp=0.5) as source:
        assert source.mpp == 0.5


def test_tiff_folder_ignores_a_writer_default_resolution_on_one_file(tmp_path):
    folder = write_tiff_folder(tmp_path / "field", stain_stack(2, 32, 32, "uint8"),
                               ["DAPI", "CD4"], mpp=0.4)
    tifffile.imwrite(folder / "CD8.tif", np.zeros((32, 32), np.uint8), resolution=(72, 72),
                     resolutionunit="INCH")  # 352.8 µm/px: a writer's default
    with open_slide_source(folder) as source:
        assert source.mpp == pytest.approx(0.4) and source.mpp_source == "image"
    only_default = tmp_path / "other"
    only_default.mkdir()
    tifffile.imwrite(only_default / "DAPI.tif", np.zeros((32, 32), np.uint8),
                     resolution=(72, 72), resolutionunit="INCH")
    with pytest.raises(SlideInputError) as info:
        open_slide_source(only_default)
    assert "states 352.778 µm per pixel" in str(info.value)
    assert "above 50 µm per pixel: a writer's default such as 72 dpi" in str(info.value)
