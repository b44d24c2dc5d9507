"""Glue of the synthetic cohort asset: call the simulator, write through storage/.
No science here, and no Dagster: a notebook can call every function with a DataLayout."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import polars as pl

from storage.cohort_files import (
    cohort_is_current,
    read_cohort_manifest,
    read_truth_mask,
    read_truth_nuclei,
    write_cohort,
)
from storage.layout import DataLayout
from storage.ome_tiff import read_ome_tiff, read_ome_tiff_info
from storage.png import write_rgb_png


@dataclass(frozen=True)
class CohortOutcome:
    cohort_dir: Path
    manifest: pl.DataFrame
    reused: bool
    seconds: float
    bytes_written: int
    n_nuclei: int
    first_slide_id: str
    preview: Path
    preview_half_png: bytes  # the preview at half size, small enough to inline


def cohort(layout: DataLayout, n_patients: int, n_slides: int, slide_px: int, seed: int,
           workers: int) -> CohortOutcome:
    """Simulate the cohort into `layout.cohort_dir` unless it already holds a complete one
    with the same parameters; preview the first slide in false colour."""
    # The simulator (scipy, scikit-image, numba: about 0.9 s of imports) loads here only.
    from pipelines.synthetic import CohortParams, false_colour, simulate_cohort

    params = CohortParams(n_patients, n_slides, slide_px, seed)
    cohort_dir = layout.cohort_dir
    started = time.perf_counter()
    reused = cohort_is_current(cohort_dir, params.as_dict())
    written = 0
    if not reused:
        written = write_cohort(cohort_dir, simulate_cohort(params, workers),
                               params.as_dict()).bytes_written
    seconds = time.perf_counter() - started
    manifest = read_cohort_manifest(cohort_dir)
    first = manifest.row(0, named=True)
    slide_file = cohort_dir / first["path"]
    rgb = false_colour(read_ome_tiff(slide_file), read_ome_tiff_info(slide_file).stains, step=2)
    preview = write_rgb_png(layout.cohort_preview_png, rgb)
    small = imagecodecs.png_encode(np.ascontiguousarray(rgb[::2, ::2]))
    n_nuclei = sum(read_truth_nuclei(cohort_dir, s).height for s in manifest["slide_id"])
    return CohortOutcome(cohort_dir, manifest, reused, seconds, written, n_nuclei,
                         first["slide_id"], preview, bytes(small))


def truth_problems(layout: DataLayout) -> dict[str, str]:
    """Per slide whose truth mask and nucleus table disagree (or break Table 1), what is wrong."""
    from pipelines.synthetic import truth_problems as slide_problems

    cohort_dir = layout.cohort_dir
    problems = {}
    for slide_id in read_cohort_manifest(cohort_dir)["slide_id"]:
        found = slide_problems(read_truth_mask(cohort_dir, slide_id),
                               read_truth_nuclei(cohort_dir, slide_id))
        if found:
            problems[slide_id] = "; ".join(found)
    return problems


def site_condition_counts(manifest: pl.DataFrame) -> pl.DataFrame:
    """Patients and slides per site and condition."""
    counts = manifest.group_by("site", "condition").agg(
        pl.len().alias("slides"), pl.col("patient_id").n_unique().alias("patients")
    ).sort("site", "condition")
    return counts.select("site", "condition", "patients", "slides")
