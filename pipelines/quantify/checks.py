"""Sanity of a slide's features: nuclei found, finite intensities, plausible areas."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

Checks = dict[str, tuple[bool, dict[str, object]]]


def feature_checks(frame: pl.DataFrame, min_area_um2: float = 3.0,
                   max_area_um2: float = 1000.0) -> Checks:
    """Sanity of a slide's features: name -> (passed, details).

    nucleus_count_positive: at least one nucleus; no_nan_intensities: every mean_* is finite;
    plausible_areas: the median nucleus area lies in [min_area_um2, max_area_um2] µm².
    """
    median_area = float(frame["area_um2"].median()) if frame.height else float("nan")
    return _checks(frame.height, _nan_rows(frame), median_area, min_area_um2, max_area_um2)


@dataclass
class FeatureSummary:
    """What `feature_checks` needs, added up frame by frame as a slide's rows stream out: the
    nucleus count, the rows with a NaN mean and how many nuclei have each area (as many
    entries as distinct areas, so the median is exact without keeping a row per nucleus)."""

    n_nuclei: int = 0
    nan_rows: int = 0
    area_counts: Counter = field(default_factory=Counter)

    def add(self, frame: pl.DataFrame, sign: int = 1) -> None:
        """Count `frame`'s rows in (sign 1) or out again (sign -1, rows being replaced)."""
        self.n_nuclei += sign * frame.height
        self.nan_rows += sign * _nan_rows(frame)
        areas, counts = np.unique(frame["area_um2"].to_numpy(), return_counts=True)
        self.area_counts.update({float(a): sign * int(c) for a, c in zip(areas, counts,
                                                                        strict=True)})

    def median_area_um2(self) -> float:
        """The median of area_um2 (the mean of the middle two for an even count), NaN if none."""
        areas = sorted(a for a, c in self.area_counts.items() if c > 0)
        if not areas:
            return float("nan")
        ends = np.cumsum([self.area_counts[a] for a in areas])
        n = int(ends[-1])
        low = areas[int(np.searchsorted(ends, (n - 1) // 2, side="right"))]
        high = areas[int(np.searchsorted(ends, n // 2, side="right"))]
        return (low + high) / 2

    def checks(self, min_area_um2: float = 3.0, max_area_um2: float = 1000.0) -> Checks:
        """The same checks as `feature_checks` on the rows added."""
        return _checks(self.n_nuclei, self.nan_rows, self.median_area_um2(), min_area_um2,
                       max_area_um2)


def _nan_rows(frame: pl.DataFrame) -> int:
    means = [c for c in frame.columns if c.startswith("mean_")]
    if not (means and frame.height):
        return 0
    return int(frame.select(
        pl.any_horizontal([pl.col(c).is_nan() | pl.col(c).is_null() for c in means]).sum()
    ).item())


def _checks(n_nuclei: int, nan_rows: int, median_area: float, min_area_um2: float,
            max_area_um2: float) -> Checks:
    return {
        "nucleus_count_positive": (n_nuclei > 0, {"n_nuclei": n_nuclei}),
        "no_nan_intensities": (nan_rows == 0, {"rows_with_nan": int(nan_rows)}),
        "plausible_areas": (
            n_nuclei > 0 and min_area_um2 <= median_area <= max_area_um2,
            {"median_area_um2": round(median_area, 2) if n_nuclei else None,
             "allowed_um2": f"{min_area_um2}-{max_area_um2}"},
        ),
    }
