"""Glue of the nucleus_inference asset: load the fold models and one slide's inputs through
storage/, hand them to pipelines/inference.py, write the table, the map and the QuPath file
through storage/. No science here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from dagster_project.partitions import fold_partitions
from pipelines.cell_types import CELL_TYPES, CLASS_COLOURS
from pipelines.errors import ConfigurationError
from pipelines.patches import PATCH_MPP
from storage import classifier_checkpoints as ckpt
from storage.atomic import atomic_write_bytes
from storage.catalog import ParquetSource, layout_sources, refresh_sources
from storage.errors import StoreLayoutError
from storage.layout import DataLayout
from storage.manifest import read_manifest_parquet
from storage.mask_store import MaskReader, open_mask
from storage.parquet_dataset import read_slide_partition, write_slide_partition
from storage.qupath_geojson import NucleusObject, write_qupath_geojson
from storage.vhe_store import VirtualHEReader, open_vhe

# pipelines.inference (torch, torchvision, matplotlib, scikit-image) loads in the inference step,
# not with the definitions every step process loads.
if TYPE_CHECKING:
    from torch import nn

    from pipelines.inference import InferenceParams

INFERENCE_VIEW = "nucleus_inference"


@dataclass(frozen=True)
class FoldModels:
    folds: list[int]
    models: list[nn.Module]
    note: str = ""  # why these folds, when they are not the ones asked for

    @property
    def label(self) -> str:
        name = (f"fold {self.folds[0]}" if len(self.folds) == 1
                else f"mean of folds {', '.join(map(str, self.folds))}")
        return f"{name} ({self.note})" if self.note else name


def held_out_fold(layout: DataLayout, slide_id: str) -> int | None:
    """The fold that held this slide's patient out of training (None: the slide is not in the
    cohort's fold split, e.g. a new slide, or no split exists yet)."""
    from pipelines.train.split import held_out_fold as fold_holding_out
    from storage.folds import folds_path, read_folds

    path = folds_path(layout.root)
    if not path.exists() or not layout.manifest_parquet.exists():
        return None
    slide = read_manifest_parquet(layout.manifest_parquet).filter(pl.col("slide_id") == slide_id)
    if slide.height == 0:
        return None
    return fold_holding_out(read_folds(path), str(slide["patient_id"][0]))


def load_slide_models(layout: DataLayout, slide_id: str, fold: int | None,
                      held_out: bool) -> FoldModels:
    """The models that predict `slide_id`: the chosen `fold`'s; with `held_out`, a cohort
    slide's held-out fold, so its map shows what the classifier learnt rather than what it
    trained on (every trained fold's mean while that fold is untrained); otherwise the mean of
    every trained fold."""
    if fold is not None or not held_out:
        return load_models(layout, fold)
    own = held_out_fold(layout, slide_id)
    if own is None:
        return load_models(layout, None)
    if own in ckpt.trained_folds(layout.models_dir):
        return replace(load_models(layout, own), note="the fold that held this patient out")
    return replace(load_models(layout, None),
                   note=f"fold {own}, which holds this patient out, is not trained yet")


def waiting_for_classifier(layout: DataLayout, fold: int | None) -> str | None:
    """Why inference must wait (no fold trained, none chosen), or None when it can run."""
    if fold is not None or ckpt.trained_folds(layout.models_dir):
        return None
    return (f"No trained classifier fold in {layout.models_dir / 'classifier'} yet: it runs "
            "by itself once a classifier fold partition is materialised.")


def load_models(layout: DataLayout, fold: int | None) -> FoldModels:
    """Every trained fold's model (fold None), or the chosen fold's; clear errors otherwise."""
    from pipelines.inference import classifier_from_state

    trained = ckpt.trained_folds(layout.models_dir)
    if fold is None:
        if not trained:
            raise StoreLayoutError(
                f"No trained classifier fold in {layout.models_dir / 'classifier'}: "
                "materialise the classifier asset (one fold partition at least) first.")
        folds = trained
    else:
        known = [int(k) for k in fold_partitions.get_partition_keys()]
        if fold not in known:
            raise ConfigurationError(f"fold must be one of {known} or unset, not {fold}.")
        if fold not in trained:
            raise StoreLayoutError(
                f"Fold {fold} has no trained classifier in "
                f"{ckpt.fold_dir(layout.models_dir, fold)}: materialise classifier partition "
                f"{fold}, or leave fold unset to average the trained folds "
                f"({', '.join(map(str, trained)) or 'none yet'}).")
        folds = [fold]
    models = []
    for f in folds:
        state, meta = ckpt.load_model(ckpt.fold_dir(layout.models_dir, f))
        if tuple(meta.get("cell_types", CELL_TYPES)) != CELL_TYPES:
            raise StoreLayoutError(f"Fold {f}'s classifier was trained for other classes "
                                   f"({meta['cell_types']}); re-materialise classifier {f}.")
        models.append(classifier_from_state(state))
    return FoldModels(folds, models)


def open_inputs(layout: DataLayout, slide_id: str) -> tuple[VirtualHEReader, pl.DataFrame]:
    path = layout.vhe_zarr(slide_id)
    if not path.exists():
        raise StoreLayoutError(f"Slide {slide_id!r} has no virtual H&E at {path}: materialise "
                               "virtual_he for this slide first.")
    return open_vhe(path), read_slide_partition(layout.features_dir, slide_id)


@dataclass
class SlideOutputs:
    frame: pl.DataFrame
    counts: pl.DataFrame
    parquet: Path
    map_png: Path
    map_bytes: bytes
    geojson: Path
    n_polygons: int
    n_points: int
    device: str
    seconds: dict[str, float]


def infer_slide(layout: DataLayout, slide_id: str, models: FoldModels,
                params: InferenceParams, catalog_db: Path,
                catalog_source: ParquetSource | None = None,
                transform: Callable[[np.ndarray], np.ndarray] | None = None) -> SlideOutputs:
    """Predict, then write the Parquet partition (and make it a view of the catalog at
    `catalog_db` if that was built before the dataset existed: `catalog_source`, default the
    layout's nucleus_inference), the map PNG and the QuPath GeoJSON. `transform` maps each
    RGB window before patches are cut (stain harmonisation of real H&E)."""
    from pipelines.inference import (
        inference_frame,
        plan_inference,
        predict_slide,
        predicted_counts,
    )

    t0 = time.perf_counter()
    vhe, features = open_inputs(layout, slide_id)
    plan = plan_inference(slide_id, features, vhe.height_px, vhe.width_px, vhe.mpp, params)
    read = vhe.read if transform is None else (
        lambda y0, x0, y1, x1: transform(vhe.read(y0, x0, y1, x1)))
    prediction = predict_slide(read, plan, models.models, params)
    frame = inference_frame(slide_id, prediction.nucleus_id, prediction.probabilities,
                            models.folds)
    parquet = write_slide_partition(layout.inference_dir, slide_id, frame)
    refresh_sources(catalog_db, [catalog_source] if catalog_source else
                    [s for s in layout_sources(layout) if s.view == INFERENCE_VIEW])
    t1 = time.perf_counter()
    map_bytes = _map(vhe, features, frame, slide_id, models.label)
    map_png = atomic_write_bytes(layout.figures_dir("inference") / f"{slide_id}.png", map_bytes)
    t2 = time.perf_counter()
    mask = open_mask(layout.mask_zarr(slide_id))
    if (mask.height_px, mask.width_px) != (vhe.height_px, vhe.width_px):
        raise StoreLayoutError(
            f"The nucleus mask of {slide_id!r} ({mask.height_px} x {mask.width_px} px) and its "
            f"virtual H&E ({vhe.height_px} x {vhe.width_px} px) differ: re-materialise both.")
    shapes = {"Polygon": 0, "Point": 0}
    geojson = layout.qupath_dir / f"{slide_id}.geojson"
    write_qupath_geojson(geojson, _objects(mask, features, frame, shapes))
    t3 = time.perf_counter()
    return SlideOutputs(
        frame, predicted_counts(frame), parquet, map_png, map_bytes, geojson,
        shapes["Polygon"], shapes["Point"], prediction.device,
        {"predict": prediction.seconds, "model": prediction.model_seconds,
         "map": t2 - t1, "geojson": t3 - t2, "total": t3 - t0,
         "patches_per_s": prediction.patches_per_s})


def _map(vhe: VirtualHEReader, features: pl.DataFrame, frame: pl.DataFrame, slide_id: str,
         models: str) -> bytes:
    from pipelines.inference_map import inference_map_png, overview_rgb

    level = vhe.level_of(PATCH_MPP)
    h, w = vhe.shape(level)
    rgb, step = overview_rgb(lambda y0, x0, y1, x1: vhe.read(y0, x0, y1, x1, level), h, w)
    where = features.select("nucleus_id", "centroid_y_um", "centroid_x_um").join(
        frame.select("nucleus_id", "predicted_index"), on="nucleus_id")
    return inference_map_png(slide_id, where["centroid_y_um"].to_numpy(),
                             where["centroid_x_um"].to_numpy(),
                             where["predicted_index"].to_numpy(), rgb,
                             vhe.level_mpp[level] * step, models)


def _objects(mask: MaskReader, features: pl.DataFrame, frame: pl.DataFrame,
             shapes: dict[str, int]) -> Iterator[NucleusObject]:
    """One QuPath detection per nucleus: its outline (else its centroid), predicted class,
    class colour and probability; `shapes` counts polygons and points."""
    from pipelines.inference import OutlineTiling, slide_outlines

    nuclei = features.select(
        "nucleus_id", "label", "centroid_y_px", "centroid_x_px",
        "bbox_y0_px", "bbox_x0_px", "bbox_y1_px", "bbox_x1_px",
    ).join(frame.select("nucleus_id", "predicted_cell_type", "probability"), on="nucleus_id")
    ids = nuclei["nucleus_id"].to_list()
    types = nuclei["predicted_cell_type"].to_list()
    probability = nuclei["probability"].to_list()
    cy, cx = nuclei["centroid_y_px"].to_list(), nuclei["centroid_x_px"].to_list()
    for i, ring in slide_outlines(mask.read, mask.height_px, mask.width_px, nuclei,
                                  OutlineTiling(tile_px=mask.chunk_px)):
        shapes["Point" if ring is None or len(ring) < 4 else "Polygon"] += 1
        # centroids are pixel-centre coordinates; QuPath puts pixel edges on integers
        yield NucleusObject(ids[i], types[i], CLASS_COLOURS[types[i]], probability[i], ring,
                            (cx[i] + 0.5, cy[i] + 0.5))
