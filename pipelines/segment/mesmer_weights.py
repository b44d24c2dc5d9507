"""Mesmer's settings: the stains it reads, tiling, batch size and post-processing thresholds.

Where its weights come from (a local copy, deepcell's cache or download, the ONNX file) is
settled by `storage/model_weights.py`; the backends receive the path found there.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import ConfigurationError
from pipelines.segment.base import DEFAULT_MEMBRANE_STAIN
from pipelines.stains import NUCLEAR_STAIN
from storage.tiles import DEFAULT_TILE_PX

MODEL_MPP = 0.5  # Mesmer was trained at 0.5 µm per pixel; inputs are resampled to it.


@dataclass(frozen=True)
class MesmerParams:
    """How a slide is segmented with Mesmer (nuclear compartment).

    `tile_px`/`halo_px` are slide pixels: each tile core is segmented with `halo_px` of context
    on every side, and a nucleus belongs to the tile whose core holds its centroid. The two
    thresholds are Mesmer's nuclear post-processing defaults (deepcell 0.12).
    """

    nuclear_stain: str = NUCLEAR_STAIN
    membrane_stain: str | None = DEFAULT_MEMBRANE_STAIN
    tile_px: int = DEFAULT_TILE_PX
    halo_px: int = 64
    batch_size: int = 4
    model_path: str | None = None
    maxima_threshold: float = 0.1
    interior_threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.tile_px <= 0 or self.halo_px < 0 or self.batch_size <= 0:
            raise ConfigurationError(
                f"Mesmer needs tile_px > 0, halo_px >= 0 and batch_size > 0; got "
                f"{self.tile_px}, {self.halo_px}, {self.batch_size}."
            )
