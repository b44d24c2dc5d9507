"""Manifest reading and validation, inbox discovery and content hashes."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from storage.errors import SlideIdError
from storage.manifest import (
    MANIFEST_SCHEMA,
    ManifestError,
    collect_manifest,
    inbox_manifest,
    inbox_slides,
    manifest_row,
    read_manifest,
    with_content_hashes,
    write_manifest,
)
from storage.slide_sources import changed_slides, content_sha256, discover_inbox, slide_id_for


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _csv(path: Path, rows: list[str], header: str = "slide_id,patient_id,site,condition,path,mpp"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_read_manifest_resolves_paths_and_keeps_text_ids(tmp_path):
    _touch(tmp_path / "slides" / "007.ome.tif")
    _touch(tmp_path / "slides" / "b.ome.tif")
    manifest = _csv(tmp_path / "manifest.csv", [
        "007,p1,ascending_colon,normal,slides/007.ome.tif,0.32",
        "b,,terminal_ileum,active_crohns,slides/b.ome.tif,",
    ])
    frame = read_manifest(manifest)
    assert frame["slide_id"].to_list() == ["007", "b"]
    assert frame["patient_id"].to_list() == ["p1", "b"]  # no patient: its own patient
    assert frame["path"].to_list() == [str(tmp_path / "slides" / "007.ome.tif"),
                                       str(tmp_path / "slides" / "b.ome.tif")]
    assert frame["mpp"].to_list() == [0.32, None]
    assert frame.schema["mpp"] == pl.Float64


def test_parquet_manifest_with_only_required_columns(tmp_path):
    _touch(tmp_path / "a.tif")
    pl.DataFrame({"slide_id": ["a"], "path": ["a.tif"]}).write_parquet(tmp_path / "m.parquet")
    frame = read_manifest(tmp_path / "m.parquet")
    assert frame.row(0, named=True) == {"slide_id": "a", "patient_id": "a", "site": None,
                                        "condition": None, "path": str(tmp_path / "a.tif"),
                                        "mpp": None, "modality": "mxif"}


def test_same_slide_twice_is_refused_naming_both_lines(tmp_path):
    _touch(tmp_path / "a.tif")
    _touch(tmp_path / "b.tif")
    manifest = _csv(tmp_path / "manifest.csv", ["a,p,,,a.tif,", "a,p,,,b.tif,"])
    with pytest.raises(SlideIdError, match=r"slide id 'a' is listed twice .*line 2.*line 3"):
        read_manifest(manifest)
    same_file = _csv(tmp_path / "m2.csv", ["a,p,,,a.tif,", "b,p,,,./a.tif,"])
    with pytest.raises(ManifestError, match=r"slide file .*a\.tif' is listed twice"):
        read_manifest(same_file)


@pytest.mark.parametrize("bad", ["../x", "/", "a/b", "..", ".hidden", "a b"])
def test_escaping_slide_ids_are_refused(tmp_path, bad):
    _touch(tmp_path / "a.tif")
    pl.DataFrame({"slide_id": [bad], "path": ["a.tif"]}).write_parquet(tmp_path / "m.parquet")
    with pytest.raises(SlideIdError, match=r"row 0: Slide id .* is not allowed"):
        read_manifest(tmp_path / "m.parquet")


def test_missing_file_names_slide_and_path(tmp_path):
    manifest = _csv(tmp_path / "manifest.csv", ["gone,p,,,slides/gone.ome.tif,0.32"])
    with pytest.raises(ManifestError, match=r"line 2: slide 'gone': no file or folder at .*gone"):
        read_manifest(manifest)
    assert read_manifest(manifest, require_files=False).height == 1


@pytest.mark.parametrize("mpp", ["-1", "0", "abc"])
def test_bad_mpp_is_refused(tmp_path, mpp):
    _touch(tmp_path / "a.tif")
    manifest = _csv(tmp_path / "manifest.csv", [f"a,p,,,a.tif,{mpp}"])
    with pytest.raises(ManifestError, match=f"line 2: mpp '{mpp}' is not a pixel size"):
        read_manifest(manifest)


def test_missing_required_column(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("slide_id,mpp\na,0.3\n")
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['path'\]"):
        read_manifest(manifest)


def test_inbox_discovery_ids_skips_partials_and_settles(tmp_path):
    inbox = tmp_path / "inbox"
    _touch(inbox / "s1.ome.tif")
    _touch(inbox / "s2.tiff")
    _touch(inbox / "field" / "DAPI.tif")
    _touch(inbox / "img.ome.zarr" / "zarr.json", "{}")
    _touch(inbox / "copying.ome.tif.part")
    _touch(inbox / ".hidden.tif")
    _touch(inbox / "notes.txt")
    (inbox / "empty").mkdir()
    found = discover_inbox(inbox)
    assert [p.name for p in found] == ["field", "img.ome.zarr", "s1.ome.tif", "s2.tiff"]
    assert [slide_id_for(p) for p in found] == ["field", "img", "s1", "s2"]
    old = os.stat(inbox / "s1.ome.tif").st_mtime
    assert discover_inbox(inbox, settle_seconds=60, now=old + 10) == []
    assert len(discover_inbox(inbox, settle_seconds=60, now=old + 120)) == 4
    assert discover_inbox(tmp_path / "nowhere") == []


def test_inbox_manifest_rows_override_names(tmp_path):
    inbox = tmp_path / "inbox"
    _touch(inbox / "scan 1.ome.tif")
    _touch(inbox / "s2.ome.tif")
    frame, problems = inbox_slides(inbox)
    assert frame["slide_id"].to_list() == ["s2"]
    assert "scan 1" in problems[0] and "rename it" in problems[0]
    with pytest.raises(SlideIdError, match="scan 1"):
        inbox_manifest(inbox)
    _csv(inbox / "manifest.csv", ["scan1,p9,,,scan 1.ome.tif,0.5"])
    frame = inbox_manifest(inbox)
    assert frame.select("slide_id", "patient_id", "mpp").rows() == [
        ("scan1", "p9", 0.5), ("s2", "s2", None)]


def test_collect_refuses_a_slide_in_both_places(tmp_path):
    _touch(tmp_path / "cohort" / "a.ome.tif")
    manifest = _csv(tmp_path / "cohort" / "manifest.csv", ["a,p,,,a.ome.tif,0.32"])
    _touch(tmp_path / "inbox" / "a.ome.tif")
    with pytest.raises(SlideIdError, match="'a' is listed both in"):
        collect_manifest(manifest, tmp_path / "inbox")


def test_collect_defaults_and_empty(tmp_path):
    with pytest.raises(ManifestError, match="No slides"):
        collect_manifest(tmp_path / "absent.csv", tmp_path / "inbox")
    with pytest.raises(ManifestError, match="No manifest at"):
        collect_manifest(tmp_path / "absent.csv", None, manifest_required=True)
    _touch(tmp_path / "inbox" / "z.ome.tif")
    frame = collect_manifest(tmp_path / "absent.csv", tmp_path / "inbox")
    assert frame["slide_id"].to_list() == ["z"]


def test_content_hash_of_file_and_folder(tmp_path):
    f = _touch(tmp_path / "a.tif", "abc")
    import hashlib

    assert content_sha256(f) == hashlib.sha256(b"abc").hexdigest()
    folder = tmp_path / "field"
    _touch(folder / "B.tif", "bb")
    _touch(folder / "A.tif", "aa")
    first = content_sha256(folder)
    os.utime(folder / "A.tif", ns=(1, 1))
    assert content_sha256(folder) == first  # touched, same bytes
    (folder / "B.tif").rename(folder / "C.tif")
    assert content_sha256(folder) != first  # a renamed stain is a different slide
    (folder / "C.tif").rename(folder / "B.tif")
    _touch(folder / ".DS_Store", "junk")
    assert content_sha256(folder) == first  # hidden files do not count


def test_changed_slides_rehash_only_on_fingerprint_change(tmp_path):
    a = _touch(tmp_path / "a.tif", "one")
    changed, record = changed_slides({"a": a}, {})
    assert changed == ["a"]
    assert changed_slides({"a": a}, record)[0] == []
    os.utime(a, ns=(10**18, 10**18))  # touched: fingerprint moves, hash does not
    changed, record2 = changed_slides({"a": a}, record)
    assert changed == [] and record2["a"]["mtime_ns"] == 10**18
    a.write_text("two")
    assert changed_slides({"a": a}, record2)[0] == ["a"]


def test_write_manifest_is_atomic_with_schema(tmp_path):
    _touch(tmp_path / "a.tif", "abc")
    _touch(tmp_path / "manifest.csv").write_text("slide_id,path,mpp\na,a.tif,0.32\n")
    frame = with_content_hashes(read_manifest(tmp_path / "manifest.csv"))
    out = write_manifest(frame, tmp_path / "data" / "manifest.parquet")
    written = pl.read_parquet(out)
    assert dict(written.schema) == MANIFEST_SCHEMA
    assert written["content_sha256"][0] == content_sha256(tmp_path / "a.tif")
    assert manifest_row(out, "a")["mpp"] == 0.32
    assert manifest_row(out, "b") is None
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["manifest.parquet"]
