"""The cross-validated evaluation report, assembled from every fold's test predictions and what
each fold's checkpoint records about its training: metrics per fold and pooled, the figures of
the paper's §3 and the Markdown that links them. Nothing is read or written here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from pipelines.cell_types import CELL_TYPES
from pipelines.evaluate import (
    ReportFigure,
    confusion_matrix,
    fold_metrics,
    fold_overview,
    report_markdown,
    summarise_folds,
)

if TYPE_CHECKING:  # matplotlib loads with the figures, in the evaluation step only
    from pipelines.figures import SlideMap

# Each figure's file name, title and caption, in the report's order.
CAPTIONS: dict[str, tuple[str, str]] = {
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

_MODEL_SCHEMA = {"fold": pl.Int16, "best_step": pl.Int64, "best_val_loss": pl.Float64,
                 "steps": pl.Int64, "steps_per_s": pl.Float64, "init": pl.Utf8}


@dataclass(frozen=True)
class Report:
    """What the report asset writes (Markdown, figures, the metric tables) and shows."""

    markdown: str
    figures: dict[str, bytes]  # file name -> PNG, the names of CAPTIONS
    per_fold: pl.DataFrame
    summary: pl.DataFrame
    overview: pl.DataFrame
    n_labelled: int


def model_table(fold_meta: Mapping[int, Mapping[str, Any]]) -> pl.DataFrame:
    """Per fold, from its checkpoint metadata: the kept step and its validation loss, the
    steps trained, their speed and the initialisation's first word."""
    return pl.DataFrame(
        [{"fold": f, "best_step": m["best_step"], "best_val_loss": float(m["best_val_loss"]),
          "steps": m["params"]["steps"], "steps_per_s": float(m["steps_per_s"]),
          "init": m["init"].split(" ")[0]} for f, m in fold_meta.items()],
        schema=_MODEL_SCHEMA)


def report_context(fold_meta: Mapping[int, Mapping[str, Any]], n_folds: int, n_patients: int,
                   n_slides: int, data: str) -> dict[str, str]:
    """The report's header lines: what data, how many patients, slides and folds, how trained."""
    return {
        "data": data,
        "patients / slides": f"{n_patients} / {n_slides}",
        "folds evaluated": f"{len(fold_meta)} of {n_folds}",
        "training": ", ".join(sorted({f"{m['params']['steps']} steps at batch "
                                      f"{m['params']['batch_size']}"
                                      for m in fold_meta.values()})),
        "initialisation": ", ".join(sorted({m["init"] for m in fold_meta.values()})),
    }


def build_report(
    predictions: pl.DataFrame,
    fold_meta: Mapping[int, Mapping[str, Any]],
    context: Mapping[str, str],
    maps: Sequence[SlideMap],
    notes: Sequence[str],
    link: Callable[[str], str],
) -> Report:
    """Metrics, figures and Markdown from the test predictions (`nucleus_id`, `slide_id`,
    `fold`, `class_index`, `predicted_index`), the folds' checkpoint metadata and the slide
    maps (pipelines.figures.SlideMap); `link(name)` is how the Markdown points at a figure."""
    from pipelines.figures import (
        accuracy_figure,
        confusion_figure,
        ppv_npv_figure,
        slide_map_figure,
        validation_figure,
    )

    per_fold = fold_metrics(predictions)
    summary = summarise_folds(per_fold)
    overview = fold_overview(predictions).join(model_table(fold_meta), on="fold", how="left")
    labelled = predictions.filter(pl.col("class_index") >= 0)
    cm = confusion_matrix(labelled["class_index"].to_numpy(),
                          labelled["predicted_index"].to_numpy(), len(CELL_TYPES))
    drawn = {
        "fig3_accuracy.png": accuracy_figure(per_fold, summary),
        "fig4_ppv_npv_prevalence.png": ppv_npv_figure(summary),
        "fig5_slide_maps.png": slide_map_figure(list(maps)) if maps else None,
        "confusion_matrix.png": confusion_figure(cm),
        "validation_loss.png": validation_figure(
            {f: m["history"] for f, m in fold_meta.items()},
            {f: m["best_step"] for f, m in fold_meta.items()}),
    }
    figures = {k: v for k, v in drawn.items() if v is not None}
    report_figures = [ReportFigure(CAPTIONS[k][0], link(k), CAPTIONS[k][1]) for k in figures]
    markdown = report_markdown(summary, overview, report_figures, dict(context))
    if notes:
        markdown += "\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return Report(markdown, figures, per_fold, summary, overview, labelled.height)
