"""Pixel size (µm per pixel) of a slide: the image's metadata against the manifest's, and
length units as the formats spell them.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from pipelines.errors import SlideInputError
from storage.pixel_size import MPP_RANGE_UM, mpp_problem

# Manifest and image pixel sizes that differ by more than this are reported.
MPP_TOLERANCE = 0.01

_UM_PER_UNIT = {
    "pm": 1e-6, "picometer": 1e-6,
    "å": 1e-4, "angstrom": 1e-4,
    "nm": 1e-3, "nanometer": 1e-3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0,
    "mm": 1e3, "millimeter": 1e3,
    "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6,
}


def resolve_mpp(
    path: Path, image_mpp: float | None, manifest_mpp: float | None, image_note: str = ""
) -> tuple[float, str]:
    """The pixel size to use (µm per pixel) and where it came from.

    The manifest's `mpp` wins when given (a user's explicit statement); otherwise the image's.
    Either must lie in `storage.pixel_size.MPP_RANGE_UM`; an implausible image value (a writer's
    default) is ignored when the manifest gives one. A disagreement of more than 1 % is reported
    as a warning. `image_note` says why the image's metadata gave no value, for the error.
    """
    low, high = MPP_RANGE_UM
    if image_mpp is not None:
        problem = mpp_problem(image_mpp)
        if problem:
            image_note = (
                f"the image metadata states {float(image_mpp):.6g} µm per pixel, which is not "
                f"a pixel size ({problem})"
            )
            image_mpp = None
    if manifest_mpp is not None and not math.isnan(float(manifest_mpp)):
        manifest_mpp = float(manifest_mpp)
        problem = mpp_problem(manifest_mpp)
        if problem:
            raise SlideInputError(
                f"{path}: the manifest's mpp for this slide is {manifest_mpp:.6g}, which is not "
                f"a pixel size ({problem}). Give µm per pixel between {low:g} and {high:g} "
                "(e.g. 0.32) in the slide's manifest row."
            )
        if image_mpp is not None and abs(image_mpp - manifest_mpp) > MPP_TOLERANCE * manifest_mpp:
            warnings.warn(
                f"{path}: the image says {image_mpp:.6g} µm/px, the manifest {manifest_mpp:.6g}; "
                "using the manifest's.",
                stacklevel=2,
            )
        return manifest_mpp, "manifest"
    if image_mpp is not None:
        return float(image_mpp), "image"
    raise SlideInputError(
        f"{path}: no pixel size: {image_note or 'the image metadata states none'} and the "
        "manifest gives no mpp. Add an mpp column (µm per pixel, e.g. 0.32) to the slide's row "
        "in the manifest."
    )


def _plausible(mpp: float | None) -> float | None:
    """A stated pixel size, kept as stated (NaN: none); `resolve_mpp` judges its range."""
    if mpp is None or math.isnan(mpp):
        return None
    return mpp


def _um_per_unit(unit: str | None, default: float | None = 1.0) -> float | None:
    if unit is None or unit == "":
        return default
    return _UM_PER_UNIT.get(str(unit).strip().lower())
