"""Every planned patch cut from an RGB slide read tile by tile, written as store rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.patches.canvas import _TileCanvas
from pipelines.patches.chunks import ChunkAssembler
from pipelines.patches.params import DEFAULT_PATCH_PARAMS, PatchParams
from pipelines.patches.plan import PatchPlan
from pipelines.patches.views import _positions_view, tile_halo_px


@dataclass(frozen=True)
class PatchSummary:
    slide_id: str
    n_patches: int
    n_edge: int
    n_tiles: int
    seconds: float
    peak_open_chunks: int
    spills: int

    @property
    def patches_per_s(self) -> float:
        return self.n_patches / max(self.seconds, 1e-9)


def extract_patches(
    read_rgb: Callable[[int, int, int, int], np.ndarray],
    plan: PatchPlan,
    write_block: Callable[[int, np.ndarray], None],
    params: PatchParams = DEFAULT_PATCH_PARAMS,
) -> PatchSummary:
    """Cut every planned patch from an RGB slide read tile by tile, writing store rows.

    `read_rgb(y0, x0, y1, x1)` returns the slide's (h, w, 3) uint8 RGB over a source box;
    `write_block(start_row, images)` receives consecutive store rows.
    """
    t0 = time.perf_counter()
    grid, P = plan.grid, params.patch_px
    assembler = ChunkAssembler(
        plan.n_patches, (P, P, 3), params.chunk_rows, write_block,
        int(params.max_buffer_mb * 2**20),
    )
    tile_y, tile_x = plan.tile_of()
    n_cols = -(-plan.src_width_px // plan.tile_px)
    tile_id = tile_y * n_cols + tile_x
    order = np.argsort(tile_id, kind="stable")
    ids, starts = np.unique(tile_id[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    halo = tile_halo_px(grid, P)
    canvas = _TileCanvas(plan, params)
    half = P // 2
    for k, tid in enumerate(ids.tolist()):
        rows = order[bounds[k] : bounds[k + 1]]
        ty, tx = divmod(int(tid), n_cols)
        y0, x0 = ty * plan.tile_px, tx * plan.tile_px
        y1 = min(plan.src_height_px, y0 + plan.tile_px)
        x1 = min(plan.src_width_px, x0 + plan.tile_px)
        ry0, rx0 = max(0, y0 - halo), max(0, x0 - halo)
        ry1, rx1 = min(plan.src_height_px, y1 + halo), min(plan.src_width_px, x1 + halo)
        image, oy, ox = canvas.render(read_rgb(ry0, rx0, ry1, rx1), ry0, rx0)
        iy, ix = plan.centre_y[rows] - half - oy, plan.centre_x[rows] - half - ox
        h, w = image.shape[:2]
        if iy.min() < 0 or ix.min() < 0 or iy.max() > h - P or ix.max() > w - P:
            raise AssertionError("A tile window does not cover its patches; halo too small.")
        view = _positions_view(image, P)
        assembler.add(rows, lambda i, view=view, iy=iy, ix=ix: view[iy[i], ix[i]])
    assembler.finish()
    return PatchSummary(
        slide_id=plan.slide_id, n_patches=plan.n_patches, n_edge=int(plan.edge.sum()),
        n_tiles=len(ids), seconds=time.perf_counter() - t0,
        peak_open_chunks=assembler.peak_chunks, spills=assembler.spills,
    )
