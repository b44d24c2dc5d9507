"""The synthetic ground-truth cohort: the demo's input slides and the tests' truth."""

import os

import dagster as dg

from dagster_project.defs.cohort import wiring
from dagster_project.defs.metadata import png_md, table_md
from dagster_project.resources import DataRoot


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
    out = wiring.cohort(data_root.layout, config.n_patients, config.n_slides, config.slide_px,
                        config.seed, config.workers)
    manifest = out.manifest
    return dg.MaterializeResult(metadata={
        "cohort_dir": dg.MetadataValue.path(str(out.cohort_dir)),
        "n_patients": manifest["patient_id"].n_unique(),
        "n_slides": manifest.height,
        "n_nuclei": out.n_nuclei,
        "reused_existing": out.reused,
        "seconds": round(out.seconds, 2),
        "mb_written": 0.0 if out.reused else round(out.bytes_written / 1e6, 1),
        "slides_per_site_condition": table_md(wiring.site_condition_counts(manifest), None),
        "preview": png_md(out.preview_half_png, caption=f"{out.first_slide_id} (DAPI blue, "
                          "PanCK green, SMA red, CD45 magenta, CD3d yellow)"),
        "preview_png": dg.MetadataValue.path(str(out.preview)),
    })


@dg.asset_check(asset=synthetic_cohort, description="truth masks and tables agree, Table 1 holds")
def synthetic_cohort_truth_is_consistent(data_root: DataRoot) -> dg.AssetCheckResult:
    problems = wiring.truth_problems(data_root.layout)
    return dg.AssetCheckResult(passed=not problems, metadata={
        "n_slides_with_problems": len(problems),
        "problems": dg.MetadataValue.json(problems),
    })
