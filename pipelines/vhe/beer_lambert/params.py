"""The renderer's parameters: dye spectra, per-stain absorptions, the eosin floor, the tissue
indicator's smoothing and the percentiles of the per-slide normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from pipelines.errors import ConfigurationError
from pipelines.stains import NUCLEAR_STAIN, canonical_stain
from pipelines.vhe.beer_lambert.absorptions import (
    DEFAULT_ABSORPTIONS,
    EOSIN_OD,
    HEMATOXYLIN_OD,
    StainAbsorption,
    Vector3,
)


@dataclass(frozen=True)
class BeerLambertParams:
    """Dye spectra, per-stain absorptions and the per-slide normalisation of the renderer.

    `missing="error"` refuses a slide lacking any stain of the table; `"ignore"` renders with
    the stains the slide has (the nuclear stain is always required).
    """

    absorptions: tuple[StainAbsorption, ...] = DEFAULT_ABSORPTIONS
    hematoxylin_od: Vector3 = HEMATOXYLIN_OD
    eosin_od: Vector3 = EOSIN_OD
    eosin_floor: float = 0.10
    tissue_sigma_um: float = 1.0
    illumination: Vector3 = (250.0, 248.0, 250.0)
    glass_percentile: float = 1.0
    background_percentile: float = 50.0
    high_percentile: float = 99.5
    min_contrast_sigma: float = 8.0
    missing: Literal["error", "ignore"] = "error"
    nuclear_stain: str = NUCLEAR_STAIN

    def __post_init__(self) -> None:
        stains = [canonical_stain(a.stain) for a in self.absorptions]
        if len(set(stains)) != len(stains):
            raise ConfigurationError(f"Beer-Lambert absorptions list a stain twice: {stains}.")
        if any(a.hematoxylin < 0 or a.eosin < 0 for a in self.absorptions):
            raise ConfigurationError("Beer-Lambert optical densities must be >= 0.")
        if self.nuclear_stain not in stains:
            raise ConfigurationError(
                f"The absorption table must give the nuclear stain {self.nuclear_stain!r} a "
                "hematoxylin weight; without it no nucleus would be blue."
            )
        levels = (self.glass_percentile, self.background_percentile, self.high_percentile)
        if not 0 <= levels[0] <= levels[1] < levels[2] <= 100:
            raise ConfigurationError(
                "Percentiles must satisfy 0 <= glass <= background < high <= 100, got "
                f"{levels}."
            )
        if self.tissue_sigma_um < 0:
            raise ConfigurationError("tissue_sigma_um must be >= 0.")
        if self.missing not in ("error", "ignore"):
            raise ConfigurationError(f"missing must be 'error' or 'ignore', not {self.missing!r}.")

    @property
    def stains(self) -> tuple[str, ...]:
        return tuple(canonical_stain(a.stain) for a in self.absorptions)

    def restricted_to(self, available: Sequence[str]) -> BeerLambertParams:
        """The same table without the stains `available` lacks."""
        have = set(available)
        kept = tuple(a for a in self.absorptions if canonical_stain(a.stain) in have)
        return replace(self, absorptions=kept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(v: Vector3) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(a)
    if norm == 0:
        raise ConfigurationError("A dye optical-density vector must not be zero.")
    return a / norm
