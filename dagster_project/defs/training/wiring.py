"""Glue of the classifier assets: load a fold's inputs through storage/, hand them to
pipelines/, write the results through storage/. No science here."""

from __future__ import annotations

import base64
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pipelines.cell_types import CELL_TYPES
from pipelines.evaluate import (
    fold_metrics,
    pick_map_slides,
)
from pipelines.train.split import ROLES, fold_patients
from storage import classifier_checkpoints as ckpt
from storage.classifier_report import asset_link, read_vhe_overview, write_report
from storage.errors import StoreLayoutError
from storage.fs import is_remote
from storage.layout import DataLayout
from storage.manifest import read_manifest_parquet
from storage.parquet_dataset import (
    read_slide_partition,
    scan_dataset,
    write_slide_partition,
)
from storage.parquet_dataset import slide_ids as feature_slide_ids
from storage.patch_chunks import PatchChunkReader
from storage.patch_store import PatchStore

# torch, torchvision and matplotlib load in the steps that train, predict or draw, not with the
# definitions every step process loads.
if TYPE_CHECKING:
    from torch import nn

    from pipelines.figures import SlideMap
    from pipelines.train.loop import TrainParams, TrainResult


@dataclass
class FoldInputs:
    """A fold's patients, slides and patch readers per role, and the ImageNet weights file."""

    layout: DataLayout
    fold: int
    manifest: pl.DataFrame
    store: PatchStore
    patients: dict[str, list[str]]
    sources: dict[str, list[PatchChunkReader]]
    weights: Path | None
    missing_slides: list[str] = field(default_factory=list)

    @property
    def init(self) -> str:
        from pipelines.train.model import describe_init

        return describe_init(self.weights)

    @property
    def directory(self) -> Path:
        return ckpt.fold_dir(self.layout.models_dir, self.fold)

    def n_patches(self, role: str) -> int:
        return sum(s.n_rows for s in self.sources[role])

    def build_model(self, seed: int) -> nn.Module:
        from pipelines.train.model import build_classifier

        state = ckpt.load_state_file(self.weights) if self.weights else None
        return build_classifier(len(self.store.cell_types), state, seed=seed)

    def fingerprint(self) -> dict[str, Any]:
        """What a resumable training state must match: the slides and their patch counts."""
        return {role: [(s.slide_id, s.n_rows) for s in self.sources[role]]
                for role in ("train", "validation")}


def load_fold(layout: DataLayout, fold: int, weights: str | None) -> FoldInputs:
    from storage.folds import folds_path, read_folds
    from storage.model_weights import find_imagenet_weights

    manifest = read_manifest_parquet(layout.manifest_parquet)
    folds = read_folds(folds_path(layout.root))
    store = PatchStore(layout.patch_store)
    if tuple(store.cell_types) != CELL_TYPES:
        raise StoreLayoutError(f"{layout.patch_store} was built for other classes.")
    available = set(store.slide_ids())
    patients, sources, missing = {}, {}, []
    for role in ROLES:
        patients[role] = fold_patients(folds, fold, role)
        slides = sorted(manifest.filter(pl.col("patient_id").is_in(patients[role]))["slide_id"])
        missing += [s for s in slides if s not in available]
        sources[role] = [PatchChunkReader(store.slide(s)) for s in slides if s in available]
    return FoldInputs(layout, fold, manifest, store, patients, sources,
                      find_imagenet_weights(weights), missing)


def train_fold(
    inputs: FoldInputs, model: nn.Module, params: TrainParams, resume: bool,
    log: logging.Logger | Any,
) -> TrainResult:
    """Train (resuming an interrupted run of the same settings and data), save the kept
    weights with their metadata, and leave `model` holding them."""
    from pipelines.train.loop import train_classifier

    directory = inputs.directory
    fingerprint = inputs.fingerprint()
    state = ckpt.load_training_state(directory) if resume else None
    if state is not None and state.get("data") != fingerprint:
        log.warning(f"Ignoring the training state in {directory}: it was made for other slides.")
        state = None
    if state is not None:
        log.info(f"Resuming fold {inputs.fold} from step {state['step']}.")

    def save(st: dict[str, Any]) -> None:
        ckpt.save_training_state(directory, {**st, "data": fingerprint})

    result = train_classifier(model, inputs.sources["train"], inputs.sources["validation"],
                              params, len(CELL_TYPES), resume=state, on_checkpoint=save)
    model.load_state_dict(result.best_state)
    ckpt.save_model(directory, result.best_state, {
        "fold": inputs.fold, "cell_types": list(CELL_TYPES), "init": inputs.init,
        "best_step": result.best_step, "best_val_loss": result.best_val_loss,
        "history": result.history, "params": asdict(params), "patients": inputs.patients,
        "steps_per_s": result.steps_per_s, "train_seconds": result.seconds,
        "device": result.device, "precision": result.precision,
        "classes_trained": result.classes_trained,
    })
    ckpt.clear_training_state(directory)
    return result


def predict_fold(
    inputs: FoldInputs, model: nn.Module, params: TrainParams
) -> tuple[pl.DataFrame, int]:
    """Predict every patch of the fold's test slides, write the slides' prediction
    partitions; returns the fold's per-class test metrics and the number of nuclei."""
    from pipelines.train.predict import predict_source, prediction_frame

    frames = []
    for source in inputs.sources["test"]:
        slide = source.slide
        probs = predict_source(model, source, params.device, params.eval_batch_size, params.amp)
        frame = prediction_frame(slide.slide_id, slide.nucleus_id, slide.class_index,
                                 slide.edge, probs, inputs.fold)
        write_slide_partition(inputs.layout.predictions_dir, slide.slide_id, frame)
        frames.append(frame.select("fold", "slide_id", "class_index", "predicted_index"))
    predictions = pl.concat(frames) if frames else pl.DataFrame(
        schema={"fold": pl.Int16, "slide_id": pl.Utf8, "class_index": pl.Int16,
                "predicted_index": pl.Int16})
    return fold_metrics(predictions), predictions.height


def fold_metrics_markdown(metrics: pl.DataFrame) -> str:
    from pipelines.evaluate import frame_markdown

    return frame_markdown(metrics.select("cell_type", "support", "predicted", "accuracy",
                                         "ppv", "npv", "prevalence"))


def folds_preview(folds: pl.DataFrame, manifest: pl.DataFrame) -> pl.DataFrame:
    """Per fold and role: patients, slides, sites and conditions covered."""
    joined = folds.join(manifest.select("patient_id", "slide_id", "site", "condition"),
                        on="patient_id", how="left")
    return (
        joined.group_by("fold", "role")
        .agg(pl.col("patient_id").n_unique().alias("patients"),
             pl.col("slide_id").n_unique().alias("slides"),
             pl.col("site").unique().sort().str.join(", ").alias("sites"),
             pl.col("condition").unique().sort().str.join(", ").alias("conditions"))
        .sort("fold", "role")
    )


@dataclass
class Evaluation:
    report_path: Path
    n_folds: int
    n_nuclei: int
    summary: pl.DataFrame
    overview: pl.DataFrame
    preview_md: str
    notes: list[str]


def _test_predictions(layout: DataLayout, folds: pl.DataFrame,
                      manifest: pl.DataFrame) -> pl.DataFrame:
    """Predictions of each fold's own test slides (stale partitions of other splits left out)."""
    tests = (folds.filter(pl.col("role") == "test")
             .join(manifest.select("patient_id", "slide_id"), on="patient_id")
             .select("slide_id", pl.col("fold").cast(pl.Int16)))
    if not layout.predictions_dir.is_dir():
        raise StoreLayoutError(
            f"No predictions in {layout.predictions_dir}: materialise the classifier folds first."
        )
    columns = ["nucleus_id", "slide_id", "fold", "class_index", "predicted_index"]
    return scan_dataset(layout.predictions_dir).select(columns).collect().join(
        tests, on=["slide_id", "fold"], how="inner")


def _slide_maps(layout: DataLayout, predictions: pl.DataFrame, manifest: pl.DataFrame,
                notes: list[str]) -> list[SlideMap]:
    from pipelines.figures import SlideMap

    with_features = set(feature_slide_ids(layout.features_dir))
    candidates = predictions.filter(pl.col("slide_id").is_in(list(with_features)))
    if candidates.height == 0:
        notes.append("No test slide has nucleus_features (centroids): the maps are left out.")
        return []
    maps = []
    for slide_id in pick_map_slides(candidates, manifest):
        centroids = read_slide_partition(layout.features_dir, slide_id).select(
            "nucleus_id", "centroid_y_um", "centroid_x_um")
        part = candidates.filter(pl.col("slide_id") == slide_id).join(centroids,
                                                                      on="nucleus_id")
        vhe = read_vhe_overview(layout.vhe_zarr(slide_id))
        if vhe is None:
            notes.append(f"No virtual H&E for {slide_id}: its map shows centroids only.")
        maps.append(SlideMap(
            slide_id, part["centroid_y_um"].to_numpy(), part["centroid_x_um"].to_numpy(),
            part["class_index"].to_numpy(), part["predicted_index"].to_numpy(),
            vhe[0] if vhe else None, vhe[1] if vhe else 0.5))
    return maps


def evaluate(layout: DataLayout, folds: pl.DataFrame) -> Evaluation:
    """Metrics, figures and the Markdown report for every fold's test predictions."""
    from pipelines.report import build_report, report_context

    notes: list[str] = []
    manifest = read_manifest_parquet(layout.manifest_parquet)
    predictions = _test_predictions(layout, folds, manifest)
    meta = {}
    for fold in sorted(folds["fold"].unique().to_list()):
        try:
            meta[fold] = ckpt.load_model_metadata(ckpt.fold_dir(layout.models_dir, fold))
        except StoreLayoutError as err:
            notes.append(str(err))
    maps = _slide_maps(layout, predictions, manifest, notes)
    data = ("the synthetic demo cohort (simulated slides, not patient data)"
            if _is_synthetic(manifest, layout) else f"slides of {layout.manifest_parquet}")
    context = report_context(meta, folds["fold"].n_unique(), manifest["patient_id"].n_unique(),
                             manifest.height, data)
    report = build_report(predictions, meta, context, maps, notes, asset_link)
    path = write_report(layout.reports_dir, report.markdown, report.figures, {
        "classifier_metrics_per_fold.csv": report.per_fold,
        "classifier_metrics_summary.csv": report.summary})
    preview = base64.b64encode(report.figures["fig4_ppv_npv_prevalence.png"]).decode("ascii")
    return Evaluation(path, len(meta), report.n_labelled, report.summary, report.overview,
                      f"![fig4](data:image/png;base64,{preview})", notes)


def _is_synthetic(manifest: pl.DataFrame, layout: DataLayout) -> bool:
    if "path" not in manifest.columns:
        return False
    if is_remote(layout.cohort_dir):
        cohort = str(layout.cohort_dir)
        return all(str(p).startswith(cohort) for p in manifest["path"].to_list())
    cohort = str(Path(layout.cohort_dir).resolve())
    return all(str(Path(p).resolve()).startswith(cohort) for p in manifest["path"].to_list())


def class_counts(sources: list[PatchChunkReader]) -> dict[str, int]:
    counts = np.zeros(len(CELL_TYPES), dtype=np.int64)
    for s in sources:
        for c, (a, b) in s.class_ranges.items():
            if 0 <= c < len(CELL_TYPES):
                counts[c] += b - a
    return {CELL_TYPES[i]: int(n) for i, n in enumerate(counts)}
