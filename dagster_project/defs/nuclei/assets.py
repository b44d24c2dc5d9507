"""Nuclei: one label mask per slide (nucleus_mask) and per-nucleus features (nucleus_features)."""

import importlib.util
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np

from dagster_project.automation import SLIDE_STAGE
from dagster_project.defs.nuclei.wiring import write_features
from dagster_project.partitions import slide_partitions
from dagster_project.process_memory import return_large_buffers
from dagster_project.resources import DataRoot
from pipelines.markdown import markdown_table
from pipelines.quantify import QuantifyParams
from pipelines.segment import SegmentParams, nuclear_image, segment_slide
from pipelines.segment.base import DEFAULT_MEMBRANE_STAIN, DEFAULT_NUCLEAR_STAINS, SegmentBackend
from pipelines.segment.preview import outline_overlay
from pipelines.segment.watershed import WatershedParams, WatershedSegmenter
from storage.fs import link
from storage.layout import DataLayout
from storage.mask_import import open_imported_mask
from storage.mask_store import create_mask, open_mask
from storage.model_weights import resolve_mesmer_onnx_model
from storage.png import write_rgb_png
from storage.slide_store import open_slide
from storage.tiles import DEFAULT_TILE_PX

PREVIEW_PX = 768
_HAS_MESMER = importlib.util.find_spec("dagster_project.defs.nuclei.mesmer") is not None
FEATURE_CHECKS = ("nucleus_count_positive", "no_nan_intensities", "plausible_areas")


class NucleusMaskConfig(dg.Config):
    """backend: watershed (default, no weights) | import (your own masks) | mesmer | mesmer-onnx.
    import_path: where imported masks are, `{slide_id}` filled in, relative to the data root."""

    backend: SegmentBackend = "watershed"
    tile_px: int = DEFAULT_TILE_PX
    halo_px: int | None = None
    nuclear_stains: list[str] = list(DEFAULT_NUCLEAR_STAINS)  # noqa: RUF012 (dagster copies config defaults)
    membrane_stain: str | None = DEFAULT_MEMBRANE_STAIN
    import_path: str = "imported_masks/{slide_id}.tif"
    mask_plane: int | None = None
    # import: a mask that looks binary (0/1) is refused, or labelled by connected components.
    binary_mask: Literal["refuse", "connected_components"] = "refuse"
    model_path: str | None = None
    smooth_sigma_um: float = WatershedParams.smooth_sigma_um


@dg.asset(key="nucleus_mask", partitions_def=slide_partitions, deps=["slide_image"],
          group_name="nuclei", kinds={"python", "zarr"}, automation_condition=SLIDE_STAGE,
          required_resource_keys={"data_root", "mesmer_pipes"} if _HAS_MESMER else {"data_root"})
def nucleus_mask(context: dg.AssetExecutionContext, config: NucleusMaskConfig
                 ) -> dg.MaterializeResult:
    """int32 nucleus labels on the slide's grid (layout.mask_zarr), segmented tile by tile."""
    return_large_buffers()  # a flat peak however many tiles (dagster_project/process_memory.py)
    layout: DataLayout = context.resources.data_root.layout
    slide_id, started = context.partition_key, time.perf_counter()
    if config.backend == "mesmer":
        from dagster_project.defs.nuclei.mesmer import segment_with_mesmer_pipes
        from pipelines.segment.mesmer_weights import MesmerParams

        params = MesmerParams(nuclear_stain=config.nuclear_stains[0],
                              membrane_stain=config.membrane_stain, tile_px=config.tile_px,
                              halo_px=config.halo_px or 64, model_path=config.model_path)
        metadata = segment_with_mesmer_pipes(context, slide_id, layout, params)
        return dg.MaterializeResult(metadata={**metadata, **_preview(layout, slide_id, config)})
    slide = open_slide(layout.slide_zarr(slide_id))
    info = slide.info
    params = SegmentParams(config.tile_px, config.halo_px, tuple(config.nuclear_stains),
                           config.membrane_stain, binary_mask=config.binary_mask)
    segmentation = segment_slide(slide, _backend(config, slide_id, layout), params)
    with create_mask(layout.mask_zarr(slide_id), slide_id, info.height_px, info.width_px,
                     attrs={"backend": config.backend}) as writer:
        for tile, block in segmentation:
            writer.write(tile.y0, tile.x0, block)
    details = {k: v for k, v in segmentation.details.items() if v is not None}
    return dg.MaterializeResult(metadata={
        "n_nuclei": segmentation.n_nuclei,
        "backend": config.backend,
        "seconds": round(time.perf_counter() - started, 2),
        "nuclei_per_mm2": round(segmentation.n_nuclei / (info.height_px * info.width_px
                                                         * info.mpp**2 * 1e-6), 1),
        "details": dg.MetadataValue.json(details),
        **_preview(layout, slide_id, config),
    })


def _backend(config: NucleusMaskConfig, slide_id: str, layout: DataLayout):
    if config.backend == "watershed":
        return WatershedSegmenter(WatershedParams(smooth_sigma_um=config.smooth_sigma_um))
    if config.backend == "import":
        path = Path(config.import_path.format(slide_id=slide_id))
        return open_imported_mask(path if path.is_absolute() else layout.root / path,
                                  config.mask_plane)
    from pipelines.segment.mesmer_onnx import MesmerOnnxSegmenter

    return MesmerOnnxSegmenter(model_path=resolve_mesmer_onnx_model(config.model_path),
                               halo_px=config.halo_px or 64)


def _preview(layout: DataLayout, slide_id: str, config: NucleusMaskConfig) -> dict:
    """Outlines on the nuclear stain over the slide's top-left corner, as PNG file + inline."""
    slide, mask = open_slide(layout.slide_zarr(slide_id)), open_mask(layout.mask_zarr(slide_id))
    h, w = min(PREVIEW_PX, mask.height_px), min(PREVIEW_PX, mask.width_px)
    stains = [s for s in config.nuclear_stains if s in slide.info.stains] or [slide.info.stains[0]]
    rgb = outline_overlay(nuclear_image(slide.read(0, 0, h, w, stains=stains)),
                          mask.read(0, 0, h, w))
    path = write_rgb_png(layout.figures_dir("nuclei") / f"{slide_id}_outlines.png", rgb)
    return {"preview": dg.MetadataValue.path(str(path)),
            "preview_md": dg.MetadataValue.md(f"![outlines]({link(path)})")}


class NucleusFeaturesConfig(dg.Config):
    tile_px: int = DEFAULT_TILE_PX
    shape_features: bool = True


@dg.asset(key="nucleus_features", partitions_def=slide_partitions,
          deps=["nucleus_mask", "slide_image"], group_name="nuclei", kinds={"python", "parquet"},
          automation_condition=SLIDE_STAGE,
          check_specs=[dg.AssetCheckSpec(n, asset="nucleus_features") for n in FEATURE_CHECKS])
def nucleus_features(context: dg.AssetExecutionContext, config: NucleusFeaturesConfig,
                     data_root: DataRoot) -> dg.MaterializeResult:
    """One row per nucleus (schema in docs/nuclei.md): id, centroid, box, shape, mean of every
    stain; streamed to Parquet strip by strip, rows in the order nuclei finish."""
    return_large_buffers()
    slide_id, layout, started = context.partition_key, data_root.layout, time.perf_counter()
    slide, mask = open_slide(layout.slide_zarr(slide_id)), open_mask(layout.mask_zarr(slide_id))
    written = write_features(layout.features_dir, slide, mask,
                             QuantifyParams(config.tile_px, config.shape_features))
    checks = [dg.AssetCheckResult(check_name=name, passed=bool(ok), metadata=details)
              for name, (ok, details) in written.summary.checks().items()]
    head = written.head.select(["nucleus_id", "centroid_y_um", "centroid_x_um", "area_um2",
                                "solidity", *written.head.columns[18:21]])
    median_area = written.summary.median_area_um2()
    return dg.MaterializeResult(check_results=checks, metadata={
        "n_nuclei": written.summary.n_nuclei,
        "n_columns": written.head.width,
        "median_area_um2": float(np.nan_to_num(median_area)),
        "seconds": round(time.perf_counter() - started, 2),
        "path": dg.MetadataValue.path(str(written.path)),
        "preview": dg.MetadataValue.md(markdown_table(head, float_format=".4g")),
    })
