"""The pixel sizes the project accepts, in µm per pixel (`mpp`).

Read by the manifest (storage/manifest.py) and by the slide readers (pipelines/ingest/), so
a value is judged the same way wherever it comes from. Outside this range a number is almost
always in the wrong unit (metres or millimetres instead of µm) or a writer's default (72 dpi).
"""

from __future__ import annotations

import math

MPP_RANGE_UM: tuple[float, float] = (0.05, 50.0)


def mpp_problem(mpp: float) -> str | None:
    """Why `mpp` (µm per pixel) cannot be a microscope's pixel size, or None when it can."""
    low, high = MPP_RANGE_UM
    try:
        mpp = float(mpp)
    except (TypeError, ValueError):
        return "it is not a number"
    if math.isnan(mpp):
        return "it is not a number"
    if mpp <= 0:
        return "a pixel size must be > 0"
    if not math.isfinite(mpp) or mpp > high:
        return (
            f"it is above {high:g} µm per pixel: a writer's default such as 72 dpi, or a value "
            "in another unit"
        )
    if mpp < low:
        return (
            f"it is below {low:g} µm per pixel: is it in metres (m) rather than µm? "
            "0.32 µm is 3.2e-07 m"
        )
    return None
