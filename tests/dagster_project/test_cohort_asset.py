"""The synthetic_cohort asset writes the cohort folder once and reuses it for the same config."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_project.defs.cohort.assets import (
    synthetic_cohort,
    synthetic_cohort_truth_is_consistent,
)
from dagster_project.resources import DataRoot
from storage.cohort_files import read_cohort_manifest


def _run(root: Path, **config) -> dict:
    result = dg.materialize(
        [synthetic_cohort, synthetic_cohort_truth_is_consistent],
        resources={"data_root": DataRoot(root=str(root))},
        run_config={"ops": {"synthetic_cohort": {"config": config}}},
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_asset_writes_then_reuses_the_cohort(tmp_path: Path) -> None:
    config = {"n_patients": 2, "n_slides": 3, "slide_px": 192, "seed": 4, "workers": 1}
    first = _run(tmp_path, **config)
    assert (first["n_patients"], first["n_slides"]) == (2, 3)
    assert first["n_nuclei"] > 50 and first["reused_existing"] is False
    assert "base64" in first["preview"] and Path(first["preview_png"]).exists()
    cohort = tmp_path / "cohort"
    assert read_cohort_manifest(cohort).height == 3
    stamp = (cohort / "slides" / "P01_S1.ome.tif").stat().st_mtime_ns
    again = _run(tmp_path, **config)
    assert again["reused_existing"] is True and again["n_nuclei"] == first["n_nuclei"]
    assert (cohort / "slides" / "P01_S1.ome.tif").stat().st_mtime_ns == stamp
    other = _run(tmp_path, **{**config, "n_slides": 2})
    assert other["reused_existing"] is False and read_cohort_manifest(cohort).height == 2
