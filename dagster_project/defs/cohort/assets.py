"""The synthetic ground-truth cohort: the demo's input slides and the tests' truth."""

import base64
import os
import time

import dagster as dg
import imagecodecs
import numpy as np
import polars as pl

from dagster_project.resources import DataRoot
from pipelines.markdown import markdown_table
from storage.cohort_files import (
    cohort_is_current,
    read_cohort_manifest,
    read_truth_mask,
    read_truth_nuclei,
    write_cohort,
)
from storage.ome_tiff import read_ome_tiff, read_ome_tiff_info
from storage.png import write_rgb_png


class CohortConfig(dg.Config):
    """Cohort size and seed (the defaults are the paper-like demo: 20 patients, 28 slides of
    1024 x 1024 px); `workers` only changes speed, never the bytes written."""

    n_patients: int = 20
    n_slides: int = 28
    slide_px: int = 1024
    seed: int = 0
    workers: int = min(2, os.cpu_count() or 1)


@dg.asset(key="synthetic_cohort", group_name="cohort", kinds={"python", "tiff"})
def synthetic_cohort(config: CohortConfig, data_root: DataRoot) -> dg.MaterializeResult:
    """OME-TIFF slides, manifest.csv and truth/ in the data root's cohort folder; skipped
    when the folder already holds a complete cohort with the same parameters."""
    # The simulator (scipy, scikit-image, numba: about 0.9 s of imports) loads in this step only.
    from pipelines.synthetic import CohortParams, false_colour, simulate_cohort

    params = CohortParams(config.n_patients, config.n_slides, config.slide_px, config.seed)
    cohort_dir = data_root.layout.cohort_dir
    started = time.perf_counter()
    reused = cohort_is_current(cohort_dir, params.as_dict())
    if not reused:
        summary = write_cohort(cohort_dir, simulate_cohort(params, config.workers),
                               params.as_dict())
    seconds = time.perf_counter() - started
    manifest = read_cohort_manifest(cohort_dir)
    first = manifest.row(0, named=True)
    slide_file = cohort_dir / first["path"]
    rgb = false_colour(read_ome_tiff(slide_file), read_ome_tiff_info(slide_file).stains, step=2)
    preview = write_rgb_png(data_root.layout.figures_dir("cohort") / "preview.png", rgb)
    small = base64.b64encode(imagecodecs.png_encode(np.ascontiguousarray(rgb[::2, ::2])))
    n_nuclei = sum(read_truth_nuclei(cohort_dir, s).height for s in manifest["slide_id"])
    return dg.MaterializeResult(metadata={
        "cohort_dir": dg.MetadataValue.path(str(cohort_dir)),
        "n_patients": manifest["patient_id"].n_unique(),
        "n_slides": manifest.height,
        "n_nuclei": n_nuclei,
        "reused_existing": reused,
        "seconds": round(seconds, 2),
        "mb_written": 0.0 if reused else round(summary.bytes_written / 1e6, 1),
        "slides_per_site_condition": dg.MetadataValue.md(_table(manifest)),
        "preview": dg.MetadataValue.md(
            f"{first['slide_id']} (DAPI blue, PanCK green, SMA red, CD45 magenta, CD3d "
            f"yellow)\n\n![preview](data:image/png;base64,{small.decode('ascii')})"
        ),
        "preview_png": dg.MetadataValue.path(str(preview)),
    })


@dg.asset_check(asset=synthetic_cohort, description="truth masks and tables agree, Table 1 holds")
def synthetic_cohort_truth_is_consistent(data_root: DataRoot) -> dg.AssetCheckResult:
    from pipelines.synthetic import truth_problems

    cohort_dir = data_root.layout.cohort_dir
    problems = {}
    for slide_id in read_cohort_manifest(cohort_dir)["slide_id"]:
        found = truth_problems(read_truth_mask(cohort_dir, slide_id),
                               read_truth_nuclei(cohort_dir, slide_id))
        if found:
            problems[slide_id] = "; ".join(found)
    return dg.AssetCheckResult(passed=not problems, metadata={
        "n_slides_with_problems": len(problems),
        "problems": dg.MetadataValue.json(problems),
    })


def _table(manifest: pl.DataFrame) -> str:
    counts = manifest.group_by("site", "condition").agg(
        pl.len().alias("slides"), pl.col("patient_id").n_unique().alias("patients")
    ).sort("site", "condition")
    return markdown_table(counts.select("site", "condition", "patients", "slides"))
