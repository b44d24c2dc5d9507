"""Manifest values that used to get through: implausible pixel sizes (issue 16, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.manifest import ManifestError, read_manifest


def _manifest(tmp_path: Path, rows: list[str], header: str = "slide_id,path,mpp") -> Path:
    for row in rows:
        (tmp_path / row.split(",")[1]).write_text("x")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    "mpp, expected",
    [
        ("0.0000001", "in metres (m) rather than µm"),
        ("inf", "above 50 µm per pixel"),
        ("1e9", "above 50 µm per pixel"),
        ("nan", "not a number"),
        ("-0.3", "must be > 0"),
        ("0", "must be > 0"),
    ],
)
def test_implausible_mpp_is_refused_naming_the_slide(tmp_path, mpp, expected):
    manifest = _manifest(tmp_path, ["P01_S1,a.tif,0.32", f"P01_S2,b.tif,{mpp}"])
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert f"line 3: mpp '{mpp}' is not a pixel size for slide 'P01_S2'" in message
    assert expected in message
    assert "Give µm per pixel, between 0.05 and 50" in message


@pytest.mark.parametrize("mpp", ["0.05", "0.32", "50"])
def test_plausible_mpp_is_kept(tmp_path, mpp):
    frame = read_manifest(_manifest(tmp_path, [f"P01_S1,a.tif,{mpp}"]))
    assert frame["mpp"].to_list() == [float(mpp)]
