"""The patch's size and pixel size (41 x 41 at 0.5 µm/px) and how a slide's patches are cut."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipelines.errors import ConfigurationError
from storage.tiles import DEFAULT_TILE_PX

PATCH_PX = 41
PATCH_MPP = 0.5


@dataclass(frozen=True)
class PatchParams:
    """`tile_px`: source pixels per tile side (rounded up to whole grid periods)."""

    patch_px: int = PATCH_PX
    mpp: float = PATCH_MPP
    tile_px: int = DEFAULT_TILE_PX
    pad_mode: Literal["reflect", "constant"] = "reflect"
    pad_value: int = 255
    chunk_rows: int = 128
    max_buffer_mb: float = 256.0

    def __post_init__(self) -> None:
        if self.patch_px < 1 or self.patch_px % 2 == 0:
            raise ConfigurationError(f"patch_px must be odd and >= 1, got {self.patch_px}.")
        if self.pad_mode not in ("reflect", "constant"):
            raise ConfigurationError(f"pad_mode must be reflect or constant, not {self.pad_mode!r}")
        if self.tile_px < 1 or self.chunk_rows < 1:
            raise ConfigurationError("tile_px and chunk_rows must be >= 1.")


# The defaults, one frozen value shared by every call that gives none.
DEFAULT_PATCH_PARAMS = PatchParams()
