"""Sanity of a slide's features: nuclei found, finite intensities, plausible areas."""

from __future__ import annotations

import polars as pl


def feature_checks(frame: pl.DataFrame, min_area_um2: float = 3.0,
                   max_area_um2: float = 1000.0) -> dict[str, tuple[bool, dict[str, object]]]:
    """Sanity of a slide's features: name -> (passed, details).

    nucleus_count_positive: at least one nucleus; no_nan_intensities: every mean_* is finite;
    plausible_areas: the median nucleus area lies in [min_area_um2, max_area_um2] µm².
    """
    means = [c for c in frame.columns if c.startswith("mean_")]
    nan_rows = frame.select(
        pl.any_horizontal([pl.col(c).is_nan() | pl.col(c).is_null() for c in means]).sum()
    ).item() if (means and frame.height) else 0
    median_area = float(frame["area_um2"].median()) if frame.height else float("nan")
    return {
        "nucleus_count_positive": (frame.height > 0, {"n_nuclei": frame.height}),
        "no_nan_intensities": (nan_rows == 0, {"rows_with_nan": int(nan_rows)}),
        "plausible_areas": (
            frame.height > 0 and min_area_um2 <= median_area <= max_area_um2,
            {"median_area_um2": round(median_area, 2) if frame.height else None,
             "allowed_um2": f"{min_area_um2}-{max_area_um2}"},
        ),
    }
