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
    ReportFigure,
    confusion_matrix,
    fold_metrics,
    fold_overview,
    pick_map_slides,
    report_markdown,
    summarise_folds,
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
    from pipelines.figures import (
        accuracy_figure,
        confusion_figure,
        ppv_npv_figure,
        slide_map_figure,
        validation_figure,
    )

    notes: list[str] = []
    manifest = read_manifest_parquet(layout.manifest_parquet)
    predictions = _test_predictions(layout, folds, manifest)
    per_fold = fold_metrics(predictions)
    summary = summarise_folds(per_fold)
    meta = {}
    for fold in sorted(folds["fold"].unique().to_list()):
        try:
            meta[fold] = ckpt.load_model_metadata(ckpt.fold_dir(layout.models_dir, fold))
        except StoreLayoutError as err:
            notes.append(str(err))
    model_info = pl.DataFrame(
        [{"fold": f, "best_step": m["best_step"], "best_val_loss": float(m["best_val_loss"]),
          "steps": m["params"]["steps"], "steps_per_s": float(m["steps_per_s"]),
          "init": m["init"].split(" ")[0]} for f, m in meta.items()],
        schema={"fold": pl.Int16, "best_step": pl.Int64, "best_val_loss": pl.Float64,
                "steps": pl.Int64, "steps_per_s": pl.Float64, "init": pl.Utf8})
    overview = fold_overview(predictions).join(model_info, on="fold", how="left")
    labelled = predictions.filter(pl.col("class_index") >= 0)
    cm = confusion_matrix(labelled["class_index"].to_numpy(),
                          labelled["predicted_index"].to_numpy(), len(CELL_TYPES))
    maps = _slide_maps(layout, predictions, manifest, notes)
    figures = {
        "fig3_accuracy.png": accuracy_figure(per_fold, summary),
        "fig4_ppv_npv_prevalence.png": ppv_npv_figure(summary),
        "fig5_slide_maps.png": slide_map_figure(maps) if maps else None,
        "confusion_matrix.png": confusion_figure(cm),
        "validation_loss.png": validation_figure(
            {f: m["history"] for f, m in meta.items()},
            {f: m["best_step"] for f, m in meta.items()}),
    }
    figures = {k: v for k, v in figures.items() if v is not None}
    captions = _captions()
    report_figures = [ReportFigure(captions[k][0], asset_link(k), captions[k][1])
                      for k in figures]
    synthetic = _is_synthetic(manifest, layout)
    context = {
        "data": ("the synthetic demo cohort (simulated slides, not patient data)" if synthetic
                 else f"slides of {layout.manifest_parquet}"),
        "patients / slides": f"{manifest['patient_id'].n_unique()} / {manifest.height}",
        "folds evaluated": f"{len(meta)} of {folds['fold'].n_unique()}",
        "training": ", ".join(sorted({f"{m['params']['steps']} steps at batch "
                                      f"{m['params']['batch_size']}" for m in meta.values()})),
        "initialisation": ", ".join(sorted({m["init"] for m in meta.values()})),
    }
    markdown = report_markdown(summary, overview, report_figures, context)
    if notes:
        markdown += "\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    path = write_report(layout.reports_dir, markdown, figures, {
        "classifier_metrics_per_fold.csv": per_fold, "classifier_metrics_summary.csv": summary})
    preview = base64.b64encode(figures["fig4_ppv_npv_prevalence.png"]).decode("ascii")
    return Evaluation(path, len(meta), labelled.height, summary, overview,
                      f"![fig4](data:image/png;base64,{preview})", notes)


def _is_synthetic(manifest: pl.DataFrame, layout: DataLayout) -> bool:
    if "path" not in manifest.columns:
        return False
    if is_remote(layout.cohort_dir):
        cohort = str(layout.cohort_dir)
        return all(str(p).startswith(cohort) for p in manifest["path"].to_list())
    cohort = str(Path(layout.cohort_dir).resolve())
    return all(str(Path(p).resolve()).startswith(cohort) for p in manifest["path"].to_list())


def _captions() -> dict[str, tuple[str, str]]:
    return {
        "fig3_accuracy.png": (
            "Per-class accuracy (Fig. 3)",
            "Accuracy (recall) of each class on the test patients: bar = mean over folds, "
            "whisker = standard deviation, dots = single folds; dashed: chance level."),
        "fig4_ppv_npv_prevalence.png": (
            "PPV, NPV and prevalence (Fig. 4)",
            "Mean ± sample std over the folds where each metric is defined; classes not "
            "above the 0.3 PPV cut-off (dashed red) with at least 20 predicted nuclei in "
            "every fold are faded; a class some fold never predicted is labelled with the "
            "folds that have a PPV."),
        "fig5_slide_maps.png": (
            "Whole-slide maps (Fig. 5)",
            "Virtual H&E, MxIF-derived cell labels and predicted labels of test slides, "
            "one dot per nucleus centroid in its class colour."),
        "confusion_matrix.png": (
            "Confusion matrix",
            "Test nuclei of all folds; rows (true classes) normalised, counts printed."),
        "validation_loss.png": (
            "Validation loss",
            "Class-balanced validation loss per fold; the circled step's weights are kept."),
    }


def class_counts(sources: list[PatchChunkReader]) -> dict[str, int]:
    counts = np.zeros(len(CELL_TYPES), dtype=np.int64)
    for s in sources:
        for c, (a, b) in s.class_ranges.items():
            if 0 <= c < len(CELL_TYPES):
                counts[c] += b - a
    return {CELL_TYPES[i]: int(n) for i, n in enumerate(counts)}
