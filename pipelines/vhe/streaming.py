"""Render a whole slide tile by tile with bounded memory.

Two passes over the slide: the first draws a uniform pixel sample (every k-th pixel of every
tile, k chosen so the sample holds about `sample_pixels` pixels) for the backend's per-slide
calibration; the second reads each tile with the backend's halo, renders it, and hands the
tile's core to a writer callback. Memory holds one tile window, its rendering and the sample,
never the slide.

The writer is called as `write(level, y0, x0, rgb)`: level 0 is the slide's grid, `rgb`
(h, w, 3) uint8 the tile's core. With a `level_grid` (pipelines/patches.ResampleGrid, e.g. to
0.5 µm/px) every rendered window is also resampled and its core written as level 1; tiles and
halos are then whole grid periods, so level 1 equals the level-0 image resampled at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipelines.errors import ConfigurationError
from pipelines.patches import ResampleGrid, resample_rgb
from pipelines.vhe.base import VirtualHEBackend
from storage.tiles import DEFAULT_TILE_PX


class SlideWindows(Protocol):
    """What rendering needs from a slide (storage.slide_store.SlideReader provides it)."""

    @property
    def info(self): ...  # .slide_id, .stains, .mpp, .height_px, .width_px

    def read(
        self, y0: int, x0: int, y1: int, x1: int, stains: Sequence[str] | None
    ) -> np.ndarray: ...  # stains=None: every stain, in info.stains order

    def tiles(self, tile_px: int | None = None, halo_px: int = 0) -> Iterator: ...


@dataclass(frozen=True)
class StreamParams:
    """`tile_px`: core size of a rendering tile (slide pixels); `sample_pixels`: calibration."""

    tile_px: int = DEFAULT_TILE_PX
    sample_pixels: int = 250_000

    def __post_init__(self) -> None:
        if self.tile_px <= 0 or self.sample_pixels <= 0:
            raise ConfigurationError("tile_px and sample_pixels must be positive.")


@dataclass(frozen=True)
class RenderSummary:
    slide_id: str
    backend: str
    height_px: int
    width_px: int
    n_tiles: int
    seconds_sample: float
    seconds_render: float
    mean_rgb: tuple[float, float, float]

    @property
    def megapixels_per_s(self) -> float:
        total = self.seconds_sample + self.seconds_render
        return self.height_px * self.width_px / 1e6 / max(total, 1e-9)


@dataclass(frozen=True)
class LevelGeometry:
    """One level render_slide writes: pixel size (µm), shape, and the tile edge in its pixels."""

    mpp: float
    height_px: int
    width_px: int
    tile_px: int


def render_levels(
    mpp: float, height_px: int, width_px: int, tile_px: int, grid: ResampleGrid
) -> list[LevelGeometry]:
    """Level 0 (the slide's grid) and level 1 (`grid`, e.g. 0.5 µm/px), each tiled so one
    rendering tile (`tile_px`, whole grid periods: `grid.align`) is one chunk of each."""
    return [
        LevelGeometry(mpp, height_px, width_px, tile_px),
        LevelGeometry(grid.dst_mpp, grid.dst_size(height_px), grid.dst_size(width_px),
                      tile_px * grid.q // grid.p),
    ]


def sample_slide(
    slide: SlideWindows, stains: Sequence[str], sample_pixels: int, tile_px: int | None = None
) -> np.ndarray:
    """(stain, n) float32 pixels on a regular lattice over the whole slide, n ≈ sample_pixels.

    Tiles default to the slide's storage chunks (`slide.chunk_px`, else 1024 px), so every
    chunk is decoded once; all stains of a tile are read in one call.
    """
    info = slide.info
    if tile_px is None:
        tile_px = int(getattr(slide, "chunk_px", (1024,))[0])
    step = max(1, int(math.sqrt(info.height_px * info.width_px / sample_pixels)))
    parts = []
    for tile in slide.tiles(tile_px, 0):
        # Lattice points y ≡ 0 (mod step) inside this core, so tiles never double-sample.
        ys = -(-tile.y0 // step) * step
        xs = -(-tile.x0 // step) * step
        if ys >= tile.y1 or xs >= tile.x1:
            continue
        _, window, index = _read(slide, ys, xs, tile.y1, tile.x1, stains)
        lattice = window[index, ::step, ::step]
        parts.append(lattice.reshape(len(stains), -1).astype(np.float32))
    return np.concatenate(parts, axis=1)


def _read(
    slide: SlideWindows, y0: int, x0: int, y1: int, x1: int, stains: Sequence[str]
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(stains of the window, window, index of each of `stains` in it).

    When the slide holds just the stains asked for, all are read in one call and kept in the
    slide's order (no per-stain reads, no reordering copy); otherwise only `stains` are read.
    """
    have = tuple(slide.info.stains)
    if set(have) == set(stains) and len(have) == len(stains):
        return have, slide.read(y0, x0, y1, x1, None), np.array([have.index(s) for s in stains])
    return tuple(stains), slide.read(y0, x0, y1, x1, stains), np.arange(len(stains))


def render_slide(
    slide: SlideWindows,
    backend: VirtualHEBackend,
    write: Callable[[int, int, int, np.ndarray], None],
    params: StreamParams = StreamParams(),
    level_grid: ResampleGrid | None = None,
) -> tuple[RenderSummary, VirtualHEBackend]:
    """Render `slide` with `backend`, calling `write(level, y0, x0, rgb)` for every tile core.

    Returns a summary and the calibrated backend (whose `params()` the store records).
    Raises StainError before reading pixels when the slide lacks a stain the backend needs.
    """
    info = slide.info
    backend = backend.for_stains(info.stains, source=f"Slide {info.slide_id!r}")
    stains = backend.stains
    t0 = time.perf_counter()
    chunk_px = getattr(slide, "chunk_px", None)  # decode every storage chunk once
    sample_tile_px = int(chunk_px[0]) if chunk_px else params.tile_px
    sample = sample_slide(slide, stains, params.sample_pixels, sample_tile_px)
    fitted = backend.calibrate(sample, info.slide_id)
    del sample
    t1 = time.perf_counter()
    tile_px, halo_px = params.tile_px, fitted.halo_px
    if level_grid is not None:
        tile_px = level_grid.align(tile_px)
        halo_px = level_grid.align(max(halo_px, math.ceil(2 * level_grid.scale) + 1))
    n_tiles = 0
    rgb_sum = np.zeros(3, np.float64)
    for tile in slide.tiles(tile_px, halo_px):
        order, window, _ = _read(
            slide, tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1, stains
        )
        rgb = fitted.render(window, order, info.mpp)
        if rgb.shape != (*window.shape[1:], 3) or rgb.dtype != np.uint8:
            raise ConfigurationError(
                f"Backend {fitted.name!r} returned {rgb.dtype} {rgb.shape} for a window of "
                f"{window.shape[1:]}; it must return (h, w, 3) uint8."
            )
        core = rgb[tile.core_in_window]
        write(0, tile.y0, tile.x0, core)
        if level_grid is not None:
            _write_level(write, level_grid, tile, rgb, info.height_px, info.width_px)
        rgb_sum += core.reshape(-1, 3).sum(axis=0, dtype=np.float64)
        n_tiles += 1
    t2 = time.perf_counter()
    mean = rgb_sum / max(1, info.height_px * info.width_px)
    summary = RenderSummary(
        slide_id=info.slide_id,
        backend=fitted.name,
        height_px=info.height_px,
        width_px=info.width_px,
        n_tiles=n_tiles,
        seconds_sample=t1 - t0,
        seconds_render=t2 - t1,
        mean_rgb=(float(mean[0]), float(mean[1]), float(mean[2])),
    )
    return summary, fitted


def _write_level(write, grid: ResampleGrid, tile, rgb: np.ndarray, height_px: int, width_px: int):
    """Resample a rendered window (starting on a grid period) and write its core as level 1."""
    q, p = grid.q, grid.p
    resampled = resample_rgb(rgb, grid)
    oy, ox = tile.read_y0 * q // p, tile.read_x0 * q // p
    y0, x0 = tile.y0 * q // p, tile.x0 * q // p
    y1 = grid.dst_size(height_px) if tile.y1 == height_px else tile.y1 * q // p
    x1 = grid.dst_size(width_px) if tile.x1 == width_px else tile.x1 * q // p
    if y1 > y0 and x1 > x0:
        write(1, y0, x0, resampled[y0 - oy : y1 - oy, x0 - ox : x1 - ox])
