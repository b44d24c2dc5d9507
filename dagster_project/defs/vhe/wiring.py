"""Glue of the virtual H&E assets: read through storage/, call pipelines/, write through storage/.
No science here, and no Dagster: a notebook can call every function with a DataLayout."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.cell_types import CELL_TYPES
from pipelines.errors import ConfigurationError
from pipelines.patches import (
    PATCH_MPP,
    PATCH_PX,
    PatchParams,
    PatchSummary,
    ResampleGrid,
    extract_patches,
    patch_table,
    plan_patches,
)
from pipelines.vhe.base import VirtualHEBackend
from pipelines.vhe.beer_lambert import BeerLambertBackend, BeerLambertParams, absorption_table
from pipelines.vhe.gallery import (
    KEY_STAINS,
    centroid_window,
    gallery_png,
    key_stain_pairs,
    thumbnail_png,
    window_half_px,
)
from pipelines.vhe.streaming import RenderSummary, StreamParams, render_levels, render_slide
from storage.atomic import atomic_write_bytes
from storage.checkpoints import (
    checkpoint_exists,
    load_cyclegan_checkpoint,
    save_cyclegan_checkpoint,
)
from storage.he_tiles import HeTileFolder
from storage.layout import DataLayout
from storage.manifest import read_manifest_parquet
from storage.parquet_dataset import read_slide_partition
from storage.patch_store import PatchStore, create_slide_patches, ensure_store
from storage.png import write_rgb_png
from storage.slide_store import SlideReader, open_slide
from storage.vhe_store import VirtualHELevel, create_vhe, open_vhe

# The CycleGAN modules (torch) load in the training step, not with the definitions.
if TYPE_CHECKING:
    from pipelines.vhe.cyclegan.train import TrainingLog, TrainParams

BACKENDS = ("beer_lambert", "cyclegan")
# CycleGanConfig fields that, when set, override the profile's training parameters.
CYCLEGAN_OVERRIDES = ("steps", "crop_px", "batch_size", "lambda_nucleus")
GALLERY_PER_CLASS = 4


def backend_for(layout: DataLayout, backend: str, table: str, missing_stains: str,
                device: str) -> VirtualHEBackend:
    """The renderer: Beer-Lambert with the named absorption table, or the trained CycleGAN."""
    if backend == "cyclegan":
        from pipelines.vhe.cyclegan.infer import load_backend

        return load_backend(layout.cyclegan_dir, device)
    if backend != "beer_lambert":
        raise ConfigurationError(f"Unknown virtual H&E backend {backend!r}: beer_lambert or "
                                 "cyclegan.")
    return BeerLambertBackend(BeerLambertParams(absorption_table(table), missing=missing_stains))


@dataclass(frozen=True)
class RenderOutcome:
    summary: RenderSummary
    backend: str
    preview_png: bytes
    preview_path: Path


def render(layout: DataLayout, slide_id: str, kind: str, backend: VirtualHEBackend,
           tile_px: int) -> RenderOutcome:
    """Render the slide into `layout.vhe_zarr(slide_id)` at its grid and at 0.5 µm/px, and
    write a thumbnail of the 0.5 µm/px level. `kind` (a name of BACKENDS) labels the store."""
    slide = open_slide(layout.slide_zarr(slide_id))
    info, grid = slide.info, ResampleGrid.between(slide.info.mpp, PATCH_MPP)
    tile_px = grid.align(tile_px)
    levels = [VirtualHELevel(g.mpp, g.height_px, g.width_px, g.tile_px)
              for g in render_levels(info.mpp, info.height_px, info.width_px, tile_px, grid)]
    with create_vhe(layout.vhe_zarr(slide_id), slide_id, levels, kind) as writer:
        summary, fitted = render_slide(
            slide, backend, writer.write, StreamParams(tile_px=tile_px), grid
        )
        writer.update_attrs({"backend": fitted.name, "params": fitted.params()})
    preview = thumbnail_png(open_vhe(layout.vhe_zarr(slide_id)).read(level=1))
    path = atomic_write_bytes(layout.vhe_preview_png(slide_id), preview)
    return RenderOutcome(summary, fitted.name, preview, path)


@dataclass(frozen=True)
class PatchOutcome:
    summary: PatchSummary
    n_labelled: int
    n_stored: int
    per_class: dict[str, int]


def write_patches(layout: DataLayout, slide_id: str) -> PatchOutcome:
    """Cut the patch of every labelled nucleus from the slide's 0.5 µm/px virtual H&E into the
    patch store; counts read back from the store."""
    table = patch_table(
        read_slide_partition(layout.labels_dir, slide_id),
        read_slide_partition(layout.features_dir, slide_id), slide_id,
    )
    vhe = open_vhe(layout.vhe_zarr(slide_id))
    plan = plan_patches(
        slide_id, table["nucleus_id"].to_numpy(), table["class_index"].to_numpy(),
        table["centroid_y_px"].to_numpy(), table["centroid_x_px"].to_numpy(),
        vhe.height_px, vhe.width_px, vhe.mpp,
    )
    ensure_store(layout.patch_store, PATCH_PX, PATCH_MPP, CELL_TYPES)
    with create_slide_patches(
        layout.patch_store, slide_id, plan.nucleus_id, plan.class_index, plan.edge, PATCH_PX,
        attrs={"source": str(layout.vhe_zarr(slide_id)), "vhe_backend": vhe.backend},
    ) as writer:
        summary = extract_patches(vhe.read, plan, writer.write_block, PatchParams())
    stored = PatchStore(layout.patch_store).slide(slide_id)
    counts = {CELL_TYPES[c]: b - a for c, (a, b) in sorted(stored.class_ranges.items())}
    return PatchOutcome(summary, table.height, stored.n_patches, counts)


@dataclass(frozen=True)
class GalleryOutcome:
    n_classes: int
    seconds: float
    png: bytes
    path: Path


def gallery(layout: DataLayout, per_class: int = GALLERY_PER_CLASS) -> GalleryOutcome:
    """The per-class gallery of every slide in the patch store, written as a PNG."""
    t0 = time.perf_counter()
    store = PatchStore(layout.patch_store)
    examples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for slide_id in store.slide_ids():
        _add_examples(examples, store, slide_id, layout, per_class)
    png = gallery_png(examples)
    path = atomic_write_bytes(layout.patch_gallery_png, png)
    return GalleryOutcome(len(examples), time.perf_counter() - t0, png, path)


def _add_examples(examples: dict[str, list[tuple[np.ndarray, np.ndarray]]], store: PatchStore,
                 slide_id: str, layout: DataLayout, per_class: int) -> None:
    """Fill `examples` with up to `per_class` (patch, green key stain) pairs per class."""
    patches = store.slide(slide_id)
    slide = open_slide(layout.slide_zarr(slide_id))
    features = read_slide_partition(layout.features_dir, slide_id).select(
        "nucleus_id", "centroid_y_px", "centroid_x_px")
    half_src = window_half_px(store.patch_px, ResampleGrid.between(slide.info.mpp,
                                                                   store.mpp).scale)
    for c, (a, b) in sorted(patches.class_ranges.items()):
        cell_type = CELL_TYPES[c]
        have = examples.setdefault(cell_type, [])
        stain = KEY_STAINS[cell_type]
        if len(have) >= per_class or stain not in slide.info.stains:
            continue
        take = min(b - a, per_class - len(have))
        images = patches.read_rows(a, a + take)
        ids = patches.nucleus_id[a : a + take]
        rows = features.filter(features["nucleus_id"].is_in(ids.tolist()))
        where = dict(zip(rows["nucleus_id"], zip(rows["centroid_y_px"], rows["centroid_x_px"],
                                                  strict=True), strict=True))
        windows = [slide.read(*centroid_window(*where[int(nid)], half_src), [stain])[0]
                   for nid in ids]
        have.extend(key_stain_pairs(images, windows))


# ---------------------------------------------------------------- the CycleGAN


def cyclegan_settings(profile: str, overrides: dict[str, Any], seed: int,
                      cpu_threads: int | None) -> tuple[dict[str, int], TrainParams, int]:
    """Architecture, training parameters and CPU threads: the profile's, with the overrides
    that are not None. The caller checks `profile` is one of PROFILES."""
    from pipelines.vhe.cyclegan.train import PROFILES

    chosen = PROFILES[profile]
    given = {k: v for k, v in overrides.items() if v is not None}
    threads = chosen.cpu_threads if cpu_threads is None else cpu_threads
    params = dataclasses.replace(chosen.train, seed=seed, **given)
    return dict(chosen.architecture), params, threads


def training_slides(layout: DataLayout, max_slides: int) -> list[SlideReader]:
    """Up to `max_slides` ingested slides, in manifest order (or by id without a manifest);
    empty when none is ingested."""
    if layout.manifest_parquet.exists():
        ids = read_manifest_parquet(layout.manifest_parquet)["slide_id"].to_list()
    else:
        ids = sorted(p.name.removesuffix(".zarr") for p in layout.slides_dir.glob("*.zarr"))
    paths = [layout.slide_zarr(i) for i in ids if layout.slide_zarr(i).exists()]
    return [open_slide(p) for p in paths[:max_slides]]


@dataclass(frozen=True)
class CycleGanOutcome:
    checkpoint: Path
    step: int
    resumed_from_step: int
    log: TrainingLog
    device: str
    n_he_tiles: int
    preview: Path
    stains: tuple[str, ...]  # what the generator sees, in order


def train_cyclegan(layout: DataLayout, slides: list[SlideReader], he_dir: Path, profile: str,
                   settings: tuple[dict[str, int], TrainParams, int], he_mpp: float | None,
                   device: str | None, resume: bool, checkpoint_every: int,
                   input_stains: str = "histology") -> CycleGanOutcome:
    """Train on `slides` and the real H&E tiles in `he_dir` (continuing from
    `layout.cyclegan_dir` when `resume`), checkpoint every `checkpoint_every` steps, and write
    the preview figure. `settings`: cyclegan_settings of `profile`; `input_stains`: the stains
    the generator sees (pipelines/vhe/cyclegan/fit.py INPUT_STAINS)."""
    from pipelines.torch_device import torch_threads
    from pipelines.vhe.cyclegan.fit import checkpoint_payload, prepare_run, preview, resume_run
    from pipelines.vhe.cyclegan.train import train

    architecture, params, threads = settings
    he = HeTileFolder(he_dir)
    extra = {"profile": profile, "input_stains": input_stains,
             "slide_ids": [s.info.slide_id for s in slides], "he_tiles": len(he),
             "he_tiles_dir": str(he_dir)}
    run = prepare_run(slides, he, architecture, params, he_mpp=he_mpp, device=device,
                      input_stains=input_stains)
    out = layout.cyclegan_dir
    start_step = 0
    if resume and checkpoint_exists(out):
        states, info = load_cyclegan_checkpoint(out, map_location=run.trainer.device)
        resume_run(run, states, info)
        start_step = info.step

    def save(_trainer: object, lg: TrainingLog) -> None:
        states, info = checkpoint_payload(run, lg, {**extra, "seconds": round(lg.seconds, 2)})
        save_cyclegan_checkpoint(out, states, info)

    with torch_threads(threads):
        log = train(run.trainer, run.mxif, run.he, checkpoint_every=checkpoint_every,
                    on_checkpoint=save)
    figure = write_rgb_png(layout.cyclegan_preview_png, preview(run, slides[0], he.read(0)))
    return CycleGanOutcome(out, run.trainer.step, start_step, log, str(run.trainer.device),
                           len(he), figure, run.trainer.stains)
