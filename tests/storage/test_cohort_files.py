"""The cohort folder: layout, manifest, truth round trip, determinism, reuse and stale files."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.synthetic import CohortParams, simulate_cohort
from storage.cohort_files import (
    cohort_is_current,
    read_cohort_manifest,
    read_cohort_params,
    read_truth_mask,
    read_truth_nuclei,
    write_cohort,
)
from storage.errors import SlideIdError
from storage.ome_tiff import read_ome_tiff, read_ome_tiff_info

PARAMS = CohortParams(n_patients=2, n_slides=3, slide_px=256, seed=11)


@pytest.fixture(scope="module")
def slides():
    return list(simulate_cohort(PARAMS))


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_manifest_and_truth_round_trip(tmp_path: Path, slides) -> None:
    summary = write_cohort(tmp_path, slides, PARAMS.as_dict())
    assert summary.n_slides == 3 and summary.n_nuclei == sum(s.nuclei.height for s in slides)
    manifest = read_cohort_manifest(tmp_path)
    assert manifest.columns == ["slide_id", "patient_id", "site", "condition", "path", "mpp"]
    assert manifest["slide_id"].to_list() == [s.slide_id for s in slides]
    assert manifest["mpp"].to_list() == [0.32] * 3
    assert set(manifest["site"]) <= {"ascending_colon", "terminal_ileum"}
    for slide, row in zip(slides, manifest.iter_rows(named=True), strict=True):
        assert row["path"] == f"slides/{slide.slide_id}.ome.tif"  # relative to the manifest
        info = read_ome_tiff_info(tmp_path / row["path"])
        assert info.stains == slide.stains and info.mpp == pytest.approx(0.32)
        assert np.array_equal(read_ome_tiff(tmp_path / row["path"]), slide.image)
        mask = read_truth_mask(tmp_path, slide.slide_id)
        assert mask.dtype == np.int32 and np.array_equal(mask, slide.labels)
        truth = read_truth_nuclei(tmp_path, slide.slide_id)
        assert truth.equals(slide.nuclei)
        assert truth.schema["cell_type"] == pl.Utf8 and truth["cell_type"].null_count() >= 0
        assert {"true_label", "centroid_y_px", "centroid_x_px", "pos_cd4", "pos_dapi"} <= set(
            truth.columns)
    assert read_cohort_params(tmp_path) == PARAMS.as_dict()
    assert not list(tmp_path.rglob(".*tmp-*"))


def test_same_seed_same_bytes(tmp_path: Path, slides) -> None:
    write_cohort(tmp_path / "a", slides, PARAMS.as_dict())
    write_cohort(tmp_path / "b", simulate_cohort(PARAMS), PARAMS.as_dict())
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(a) == 3 * 3 + 2 and a == b


def test_reuse_needs_same_params_and_every_file(tmp_path: Path, slides) -> None:
    assert not cohort_is_current(tmp_path, PARAMS.as_dict())
    write_cohort(tmp_path, slides, PARAMS.as_dict())
    assert cohort_is_current(tmp_path, PARAMS.as_dict())
    assert not cohort_is_current(tmp_path, replace(PARAMS, seed=12).as_dict())
    (tmp_path / "truth" / slides[1].slide_id / "mask.tif").unlink()
    assert not cohort_is_current(tmp_path, PARAMS.as_dict())


def test_smaller_cohort_removes_stale_slides(tmp_path: Path, slides) -> None:
    write_cohort(tmp_path, slides, PARAMS.as_dict())
    write_cohort(tmp_path, slides[:1], {"custom": 1})
    assert [p.name for p in (tmp_path / "slides").iterdir()] == [
        f"{slides[0].slide_id}.ome.tif"]
    assert [p.name for p in (tmp_path / "truth").iterdir()] == [slides[0].slide_id]


def test_duplicate_or_unsafe_ids_leave_no_complete_cohort(tmp_path: Path, slides) -> None:
    write_cohort(tmp_path, slides, PARAMS.as_dict())
    with pytest.raises(SlideIdError, match="twice"):
        write_cohort(tmp_path, [slides[0], slides[0]], PARAMS.as_dict())
    assert read_cohort_params(tmp_path) is None  # the interrupted cohort is not reused
    assert not cohort_is_current(tmp_path, PARAMS.as_dict())
    with pytest.raises(SlideIdError):
        write_cohort(tmp_path / "x", [replace(slides[0], slide_id="../evil")], {})
    assert not (tmp_path / "evil.ome.tif").exists()
