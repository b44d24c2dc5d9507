"""The whole chain, every asset, on a tiny synthetic cohort: what `make demo` does, smaller."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import zarr

from dagster_project.resources import DATA_ROOT_ENV
from pipelines.cell_types import CELL_TYPES
from storage.layout import DataLayout
from storage.parquet_dataset import scan_dataset
from storage.patch_store import PatchStore

TINY = {
    "synthetic_cohort": {"config": {"n_patients": 14, "n_slides": 14, "slide_px": 256}},
    "cyclegan_model": {"config": {"steps": 3, "crop_px": 32}},
    "classifier": {"config": {"steps": 4, "batch_size": 8}},
    "he_nucleus_model": {"config": {"steps": 2, "crop_px": 32, "batch_size": 2}},
}


@pytest.mark.integration
@pytest.mark.timeout(2400)
@pytest.mark.slow
def test_every_asset_materialises_and_the_tables_add_up(
    tmp_path: Path,
) -> None:
    # As a new user runs it: the installed command, from a fresh working directory, on the
    # default relative data root (`data`), with none of the project's variables set.
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({"ops": TINY}))
    env = {k: v for k, v in os.environ.items()
           if k not in (DATA_ROOT_ENV, "DAGSTER_HOME") and not k.startswith("NUCLEUS_SUBTYPING")}
    cli = Path(sys.executable).with_name("nucleus-subtyping")
    done = subprocess.run([str(cli), "demo", "--run-config", config.name], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "Summary" in done.stdout and "FAILED" not in done.stdout
    assert (tmp_path / "data" / ".dagster" / "dagster.yaml").exists()

    layout = DataLayout(tmp_path / "data")
    manifest = pl.read_parquet(layout.manifest_parquet)
    slide_ids = sorted(manifest["slide_id"])
    assert len(slide_ids) == 14 and manifest["patient_id"].n_unique() == 14

    features = scan_dataset(layout.features_dir).collect()
    labels = scan_dataset(layout.labels_dir).collect()
    # Every nucleus of every mask has one feature row and one label row, ids unique.
    for slide_id in slide_ids:
        mask = np.asarray(zarr.open_group(str(layout.mask_zarr(slide_id)), mode="r")["labels"])
        n_mask = len(np.unique(mask[mask > 0]))
        assert features.filter(pl.col("slide_id") == slide_id).height == n_mask
    assert features["nucleus_id"].is_unique().all()
    assert sorted(labels["nucleus_id"]) == sorted(features["nucleus_id"])
    kept = labels.filter(pl.col("class_index") >= 0)
    assert kept.height > 0.5 * labels.height
    assert set(kept["cell_type"]) <= set(CELL_TYPES)

    # The SQL catalog agrees with the Parquet label table.
    with duckdb.connect(str(layout.catalog_db), read_only=True) as con:
        counts = dict(con.sql(
            "SELECT cell_type, sum(n_nuclei) FROM cell_type_counts_per_slide "
            "WHERE cell_type IS NOT NULL GROUP BY cell_type").fetchall())
    expected = dict(kept.group_by("cell_type").len().iter_rows())
    # The catalog lists every class, with 0 for those no nucleus of this small cohort has.
    assert {k: int(v) for k, v in counts.items() if v} == expected
    assert set(counts) == set(CELL_TYPES)

    # One patch per labelled nucleus, each in its class's run of rows.
    store = PatchStore(layout.patch_store)
    assert store.slide_ids() == slide_ids
    n_patches = sum(store.slide(s).n_patches for s in slide_ids)
    assert n_patches == kept.height

    # Patient-level folds: every patient tested exactly once; every test nucleus predicted once.
    folds = pl.read_parquet(layout.root / "folds.parquet")
    tested = folds.filter(pl.col("role") == "test")
    assert sorted(tested["patient_id"]) == sorted(manifest["patient_id"])
    predictions = scan_dataset(layout.predictions_dir).collect()
    assert predictions["nucleus_id"].is_unique().all()
    assert predictions.height == n_patches

    report = (layout.reports_dir / "classifier_report.md").read_text()
    assert all(cell_type in report for cell_type in CELL_TYPES)

    # Every nucleus of every slide is classified, and exported for QuPath.
    inference = scan_dataset(layout.inference_dir).collect()
    assert sorted(inference["nucleus_id"]) == sorted(features["nucleus_id"])
    assert all((layout.qupath_dir / f"{s}.geojson").exists() for s in slide_ids)
