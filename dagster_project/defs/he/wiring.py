"""Glue of the real-H&E assets: read through storage/, call pipelines/, write through storage/.
No science here. Every output of an H&E slide lies under `layout.he` (storage/layout.py)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.errors import ConfigurationError, SlideInputError
from pipelines.he_harmonise import Harmoniser, fit_harmoniser
from pipelines.he_ingest import (
    HEIngestSummary,
    describe_he,
    open_he_source,
    patch_level_grid,
    stream_he,
)
from pipelines.he_stains import HEStainSlide
from pipelines.patches import PATCH_MPP, PATCH_PX
from pipelines.quantify import QuantifyParams, quantify_slide
from pipelines.segment.base import LabelSource
from pipelines.segment.he import (
    IMPORT_BACKEND,
    HENucleusSegmenter,
    HESlideSegmentation,
    build_he_backend,
    segment_he_slide,
)
from pipelines.segment.preview import rgb_outline_overlay
from pipelines.vhe.gallery import thumbnail_png
from storage.catalog import HE_INFERENCE_VIEW, ParquetSource, layout_sources
from storage.errors import StoreLayoutError
from storage.fs import as_path, local_copy
from storage.he_segmenter_checkpoints import he_segmenter_dir
from storage.he_slide import create_he_slide, he_store_current, open_he_slide
from storage.layout import DataLayout
from storage.manifest import HE, manifest_row
from storage.mask_import import open_imported_mask
from storage.mask_store import create_mask, open_mask
from storage.parquet_dataset import write_slide_partition
from storage.patch_store import PatchStore
from storage.png import write_rgb_png
from storage.slide_sources import content_sha256

PREVIEW_PX = 768
HE_LEARNED = "he-learned"  # its weights default to the data root's he_nucleus_model
HARMONISE_NUCLEI = 1000  # nuclei (and training patches) whose pixels fit the harmonisation


def he_row(layout: DataLayout, slide_id: str) -> dict[str, Any]:
    """The slide's manifest row; an error when it is absent or not an H&E slide."""
    row = manifest_row(layout.manifest_parquet, slide_id)
    if row is None or row.get("modality", "mxif") != HE:
        raise SlideInputError(
            f"Slide {slide_id!r} is not an H&E slide of {layout.manifest_parquet}: materialise "
            "slide_manifest, with modality he in the slide's manifest row."
        )
    return row


@dataclass(frozen=True)
class IngestOutcome:
    path: Path
    height_px: int
    width_px: int
    mpp: float
    mpp_source: str
    format: str
    content_sha256: str
    reused: bool
    tissue_fraction: float
    mean_tissue_rgb: tuple[float, float, float]
    seconds: float
    preview_png: bytes

    @property
    def data_version(self) -> str:
        key = f"{self.content_sha256}|{self.height_px}|{self.width_px}|{self.mpp!r}"
        return hashlib.sha256(key.encode()).hexdigest()[:24]


def ingest(layout: DataLayout, slide_id: str, tile_px: int, force: bool) -> IngestOutcome:
    """Stream the slide's file into `layout.he.vhe_zarr(slide_id)` (unless already there)."""
    started = time.perf_counter()
    row = he_row(layout, slide_id)
    final = layout.he.vhe_zarr(slide_id)
    digest = content_sha256(as_path(row["path"]))
    with local_copy(row["path"]) as local, open_he_source(local, mpp=row["mpp"]) as source:
        reused = not force and he_store_current(final, digest, source.mpp, source.height_px,
                                                source.width_px)
        summary: HEIngestSummary | None = None
        if not reused:
            grid = patch_level_grid(source.mpp)
            attrs = {**describe_he(source), "source_path": str(as_path(row["path"])),
                     "content_sha256": digest}
            with create_he_slide(final, slide_id, source.mpp, source.height_px,
                                 source.width_px, (grid.dst_mpp, grid.dst_size(source.height_px),
                                                   grid.dst_size(source.width_px)),
                                 grid.align(tile_px), attrs) as writer:
                summary = stream_he(source, writer.write, tile_px, grid)
                writer.update_attrs({"tissue_fraction": summary.tissue_fraction,
                                     "mean_tissue_rgb": list(summary.mean_tissue_rgb)})
        mpp, mpp_source, fmt = source.mpp, source.mpp_source, source.format
    store = open_he_slide(final)
    tissue = summary.tissue_fraction if summary else float(store.attrs.get("tissue_fraction", 0))
    mean_rgb = summary.mean_tissue_rgb if summary else tuple(store.attrs.get(
        "mean_tissue_rgb", (0.0, 0.0, 0.0)))
    level = store.level_of(PATCH_MPP) if len(store.level_mpp) > 1 else 0
    preview = thumbnail_png(store.read(level=level))
    return IngestOutcome(final, store.height_px, store.width_px, mpp, mpp_source, fmt, digest,
                         reused, tissue, mean_rgb, time.perf_counter() - started, preview)


def backend_for(layout: DataLayout, slide_id: str, backend: str, settings: dict[str, Any],
                import_path: str, mask_plane: int | None) -> HENucleusSegmenter | LabelSource:
    """The configured backend: a registered one built from `settings`, or imported labels."""
    if backend == IMPORT_BACKEND:
        path = Path(import_path.format(slide_id=slide_id))
        path = path if path.is_absolute() else layout.root / path
        if path.suffix.lower() in (".geojson", ".json"):
            from pipelines.segment.geojson import GeoJSONLabels
            from storage.qupath_geojson import read_detection_polygons

            slide = open_he_slide(layout.he.vhe_zarr(slide_id))
            return GeoJSONLabels(read_detection_polygons(path), (slide.height_px,
                                                                 slide.width_px), str(path))
        return open_imported_mask(path, mask_plane)
    if backend == HE_LEARNED and not settings.get("model_path"):
        settings = {**settings, "model_path": str(he_segmenter_dir(layout.models_dir))}
    return build_he_backend(backend, settings)


def segment(layout: DataLayout, slide_id: str, backend: HENucleusSegmenter | LabelSource,
            tile_px: int, halo_px: int | None, binary_mask: str) -> HESlideSegmentation:
    """Segment the slide and write `layout.he.mask_zarr(slide_id)`; returns the run."""
    slide = open_he_slide(layout.he.vhe_zarr(slide_id))
    run = segment_he_slide(slide, backend, tile_px, halo_px, binary_mask)  # type: ignore[arg-type]
    with create_mask(layout.he.mask_zarr(slide_id), slide_id, slide.height_px, slide.width_px,
                     attrs={"backend": getattr(backend, "name", "import")}) as writer:
        for tile, block in run:
            writer.write(tile.y0, tile.x0, block)
    return run


def outline_preview(layout: DataLayout, slide_id: str) -> Path:
    """Outlines over the slide's top-left corner, as a PNG under figures/nuclei."""
    slide = open_he_slide(layout.he.vhe_zarr(slide_id))
    mask = open_mask(layout.he.mask_zarr(slide_id))
    h, w = min(PREVIEW_PX, mask.height_px), min(PREVIEW_PX, mask.width_px)
    rgb = rgb_outline_overlay(slide.read(0, 0, h, w), mask.read(0, 0, h, w))
    return write_rgb_png(layout.he.figures_dir("nuclei") / f"{slide_id}_outlines.png", rgb)


def features(layout: DataLayout, slide_id: str, tile_px: int) -> tuple[pl.DataFrame, Path]:
    """nucleus_features of the slide (shape, mean hematoxylin and eosin) under layout.he."""
    slide = HEStainSlide(open_he_slide(layout.he.vhe_zarr(slide_id)))
    frame = quantify_slide(slide, open_mask(layout.he.mask_zarr(slide_id)),
                           QuantifyParams(tile_px))
    return frame, write_slide_partition(layout.he.features_dir, slide_id, frame)


def catalog_source(layout: DataLayout) -> ParquetSource:
    """The catalog view of H&E predictions (kept apart from the MxIF nucleus_inference)."""
    return next(s for s in layout_sources(layout) if s.view == HE_INFERENCE_VIEW)


def target_pixels(classifier_layout: DataLayout, n_patches: int = HARMONISE_NUCLEI,
                  seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 pixels of up to `n_patches` training patches of the virtual H&E."""
    try:
        store = PatchStore(classifier_layout.patch_store)
    except StoreLayoutError as exc:
        raise ConfigurationError(
            f"Stain harmonisation matches the virtual H&E the classifier was trained on, but "
            f"{exc} Set harmonise: none, or point classifier_root at the data root whose "
            "classifier is used."
        ) from None
    slides = [store.slide(s) for s in store.slide_ids()]
    counts = np.array([s.n_patches for s in slides])
    if not counts.sum():
        raise ConfigurationError(f"The patch store {store.path} holds no patches; set "
                                 "harmonise: none or materialise nucleus_patches.")
    rng = np.random.default_rng(seed)
    take = np.minimum(counts, np.ceil(n_patches * counts / counts.sum()).astype(int))
    parts = []
    for patches, k in zip(slides, take, strict=True):
        if k:
            start = int(rng.integers(0, patches.n_patches - k + 1))
            parts.append(patches.read_rows(start, start + int(k)))
    return np.concatenate(parts).reshape(-1, 3)


def source_pixels(layout: DataLayout, slide_id: str, frame: pl.DataFrame,
                  n_nuclei: int = HARMONISE_NUCLEI, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 pixels of patch-sized windows (0.5 µm/px) around up to `n_nuclei` nuclei."""
    store = open_he_slide(layout.he.vhe_zarr(slide_id))
    level = store.level_of(PATCH_MPP) if len(store.level_mpp) > 1 else 0
    h, w = store.shape(level)
    scale = store.mpp / store.level_mpp[level]
    rng = np.random.default_rng(seed)
    rows = rng.permutation(frame.height)[:n_nuclei]
    cy = frame["centroid_y_px"].to_numpy()[rows] * scale
    cx = frame["centroid_x_px"].to_numpy()[rows] * scale
    half = PATCH_PX // 2
    parts = []
    for y, x in zip(cy, cx, strict=True):
        y0, x0 = max(0, int(y) - half), max(0, int(x) - half)
        parts.append(store.read(y0, x0, min(h, y0 + PATCH_PX), min(w, x0 + PATCH_PX),
                                level).reshape(-1, 3))
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.uint8)


def harmoniser_for(layout: DataLayout, slide_id: str, method: str, frame: pl.DataFrame,
                   classifier_layout: DataLayout) -> tuple[Harmoniser | None, str]:
    """The slide's harmonisation (None: `none`, or no nuclei) and a note when it fell back."""
    if method == "none" or frame.height == 0:
        return None, ""
    target = target_pixels(classifier_layout)
    try:
        return fit_harmoniser(method, source_pixels(layout, slide_id, frame), target), ""
    except ConfigurationError as exc:
        return None, f"{slide_id}: harmonisation {method} not applied: {exc}"
