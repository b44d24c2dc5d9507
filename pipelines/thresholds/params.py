"""How automatic thresholds are found (method, bins, EM iterations, minimum nuclei and
separation) and what one automatic threshold is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipelines.errors import ConfigurationError

MEAN_PREFIX = "mean_"
METHODS: tuple[str, ...] = ("otsu_log1p", "gmm2_log1p")


AutoMethod = Literal["gmm2_log1p", "otsu_log1p"]


@dataclass(frozen=True)
class AutoThresholdParams:
    """How automatic thresholds are found (see the module docstring)."""

    method: AutoMethod = "otsu_log1p"
    bins: int = 256
    em_iterations: int = 200
    min_nuclei: int = 20
    min_separation: float = 2.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigurationError(
                f"Unknown automatic threshold method {self.method!r}; use one of {METHODS}."
            )
        if self.bins < 8 or self.em_iterations < 1 or self.min_nuclei < 2:
            raise ConfigurationError(
                "Automatic thresholds need bins >= 8, em_iterations >= 1 and min_nuclei >= 2."
            )

    @property
    def label(self) -> str:
        """The method as stored beside each threshold, with the settings that shape it."""
        if self.method == "otsu_log1p":
            return (
                f"otsu_log1p(bins={self.bins},iterations={self.em_iterations},"
                f"min_d={self.min_separation})"
            )
        return (
            f"gmm2_log1p(bins={self.bins},iterations={self.em_iterations},"
            f"min_d={self.min_separation})"
        )


@dataclass(frozen=True)
class AutoThreshold:
    threshold: float
    method: str
    note: str
