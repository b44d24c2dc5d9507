"""The automatic cut-off of one stain of one slide, with the note that says which fallback
applied (too few nuclei, no spread, one population).
"""

from __future__ import annotations

import numpy as np

from pipelines.thresholds.mixture import _crossing, _gmm_log, _otsu_log, _separation
from pipelines.thresholds.params import AutoThreshold, AutoThresholdParams


def auto_threshold(intensities: np.ndarray, params: AutoThresholdParams) -> AutoThreshold:
    """The automatic cut-off for one stain of one slide, in the slide's intensity units."""
    x = np.asarray(intensities, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < params.min_nuclei:
        return AutoThreshold(
            float(x.max()) if x.size else 0.0, params.label,
            f"too few nuclei ({x.size} < {params.min_nuclei}): threshold at the largest value, "
            "none positive",
        )
    if float(x.max()) == float(x.min()):
        return AutoThreshold(
            float(x.max()), params.label,
            "every nucleus has the same intensity: threshold at that value, none positive",
        )
    logs = np.log1p(np.clip(x, 0.0, None))
    if float(logs.max()) == float(logs.min()):
        return AutoThreshold(float(x.max()), params.label,
                             "no spread after log1p: threshold at the largest value, none positive")
    cut = _otsu_log(logs, params.bins)
    note = ""
    fitted = _gmm_log(logs, cut, params.bins, params.em_iterations)
    if fitted is None:
        note = "mixture lost a component; Otsu cut-off used"
    elif _separation(fitted[1], fitted[2]) < params.min_separation:
        mean, sd = float(logs.mean()), float(logs.std())
        cut = max(cut, mean + 3.0 * sd)
        note = (
            f"no separate positive population (Ashman's D "
            f"{_separation(fitted[1], fitted[2]):.2f} < {params.min_separation}): "
            "cut-off at mean + 3 SD of log1p intensities"
        )
    elif params.method == "gmm2_log1p":
        crossing = _crossing(*fitted)
        if crossing is None:
            note = "mixture found no crossing between its means; Otsu cut-off used"
        else:
            cut = crossing
    return AutoThreshold(float(np.expm1(cut)), params.label, note)
