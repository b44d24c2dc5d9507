"""Tile geometry shared by every streaming pass: core boxes that cover a slide exactly once,
each with a halo of context around it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# The default edge of a streaming pass's tile, in pixels (a multiple of the stores' chunks).
DEFAULT_TILE_PX = 1024


@dataclass(frozen=True)
class Tile:
    """A core box [y0, y1) x [x0, x1) and its read window grown by the halo (clipped)."""

    y0: int
    x0: int
    y1: int
    x1: int
    read_y0: int
    read_x0: int
    read_y1: int
    read_x1: int

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """Slices that cut the core out of an array read over the window."""
        return (
            slice(self.y0 - self.read_y0, self.y1 - self.read_y0),
            slice(self.x0 - self.read_x0, self.x1 - self.read_x0),
        )


def tile_grid(height_px: int, width_px: int, tile_px: int, halo_px: int = 0) -> Iterator[Tile]:
    """Row-major tiles whose cores partition the slide; windows overlap by `halo_px` each side."""
    if tile_px <= 0 or halo_px < 0:
        raise ValueError(f"tile_px must be > 0 and halo_px >= 0, got {tile_px}, {halo_px}.")
    for y0 in range(0, height_px, tile_px):
        for x0 in range(0, width_px, tile_px):
            y1, x1 = min(y0 + tile_px, height_px), min(x0 + tile_px, width_px)
            yield Tile(
                y0, x0, y1, x1,
                max(0, y0 - halo_px), max(0, x0 - halo_px),
                min(height_px, y1 + halo_px), min(width_px, x1 + halo_px),
            )
