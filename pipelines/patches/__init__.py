"""Nucleus patches: 41x41 RGB at 0.5 µm/px centred on every nucleus, cut from whole slides.

Resampling happens once per tile, not per patch. The slide's pixel grid (mpp_src) and the
patch grid (mpp_dst) are related by a rational step `p/q` (p source pixels per q patch-grid
pixels, `ResampleGrid`): patch-grid pixel j has its centre at source coordinate
`(j + 0.5) * p / q - 0.5`. Tiles and halos are multiples of p source pixels, so every tile
starts on a patch-grid pixel and a tile resampled on its own is pixel for pixel the slide
resampled at once (seamless, and the same patches whatever the tile size).

Each nucleus is centred on the patch-grid pixel nearest its centroid (at most half a patch
pixel, 0.25 µm, away). Nuclei whose 41x41 box leaves the slide are padded (reflect by default,
or a constant) and flagged `edge`; none is dropped.

Rows come out in the patch store's order (by class index, then nucleus_id), assembled per
128-row chunk while tiles stream: a chunk is written as soon as all its rows are cut, and if
the open chunks ever exceed `max_buffer_mb` they are written partially (runs of finished rows)
and freed, so memory stays bounded by one tile + O(n) metadata + the buffer cap.

One module per part: patch size and parameters (`params`), the patch grid (`resample`), the
plan (`plan`), chunk assembly (`chunks`), patch views (`views`), the tile canvas (`canvas`) and
the extraction loop (`extract`).
"""

from pipelines.patches.chunks import ChunkAssembler
from pipelines.patches.extract import PatchSummary, extract_patches
from pipelines.patches.params import PATCH_MPP, PATCH_PX, PatchParams
from pipelines.patches.plan import PatchPlan, patch_table, plan_patches
from pipelines.patches.resample import ResampleGrid, resample_rgb
from pipelines.patches.views import cut_patches, patch_view, tile_halo_px

__all__ = [
    "PATCH_MPP",
    "PATCH_PX",
    "ChunkAssembler",
    "PatchParams",
    "PatchPlan",
    "PatchSummary",
    "ResampleGrid",
    "cut_patches",
    "extract_patches",
    "patch_table",
    "patch_view",
    "plan_patches",
    "resample_rgb",
    "tile_halo_px",
]
