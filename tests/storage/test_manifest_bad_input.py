"""Manifest values that used to get through or got misleading messages (issue 16, items 3, 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import SlideIdError
from storage.manifest import CONDITIONS, SITES, ManifestError, collect_manifest, read_manifest


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


# -- misleading messages (issue 16, item 8) ---------------------------------------------------
def test_header_only_manifest_says_it_has_no_rows(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("slide_id,path,mpp\n")
    with pytest.raises(ManifestError) as info:
        collect_manifest(manifest, tmp_path / "inbox")
    message = str(info.value)
    assert f"the manifest {manifest} has no rows (only a header)" in message
    assert "no manifest at" not in message


def test_semicolon_separated_manifest_asks_for_commas(tmp_path):
    (tmp_path / "a.tif").write_text("x")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("slide_id;path;mpp\nP01_S1;a.tif;0,32\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert "is separated by semicolons; write the manifest with commas" in message
    assert "truncate_ragged_lines" not in message


def test_slide_ids_differing_only_in_case_are_refused(tmp_path):
    manifest = _manifest(tmp_path, ["P01_S1,a.tif,0.32", "p01_s1,b.tif,0.32"])
    with pytest.raises(SlideIdError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert "'P01_S1'" in message and "'p01_s1'" in message and "line 3" in message
    assert "differ only in case" in message and "macOS and Windows" in message


def test_case_collision_between_manifest_and_inbox_is_refused(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    manifest = _manifest(cohort, ["P01_S1,a.tif,0.32"])
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "p01_s1.ome.tif").write_text("x")
    with pytest.raises(SlideIdError, match=r"'P01_S1' \(.*manifest\.csv\) and 'p01_s1' \(.*inbox"):
        collect_manifest(manifest, tmp_path / "inbox")


def test_non_ascii_slide_id_message_says_ascii_letters(tmp_path):
    manifest = _manifest(tmp_path, ["biopsié_1,a.tif,0.32"])
    with pytest.raises(SlideIdError, match=r"line 2: Slide id 'biopsié_1' is not allowed: use "
                                           r"ASCII letters"):
        read_manifest(manifest)


@pytest.mark.parametrize("column, value", [("site", "colon"), ("condition", "crohns")])
def test_unknown_site_or_condition_is_refused_when_the_manifest_is_read(tmp_path, column, value):
    (tmp_path / "a.tif").write_text("x")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"slide_id,path,{column}\nP01_S1,a.tif,{value}\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert f"line 2: slide 'P01_S1' has {column} '{value}'; use one of" in message
    allowed = SITES if column == "site" else CONDITIONS
    assert str(list(allowed)) in message
    manifest.write_text(f"slide_id,path,{column}\nP01_S1,a.tif,\n")  # empty is fine
    assert read_manifest(manifest)[column].to_list() == [None]
