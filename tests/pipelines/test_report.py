"""The evaluation report's assembly: metrics from the test predictions, the header from the
folds' training records, the figures and the Markdown that links them."""

from __future__ import annotations

import polars as pl

from pipelines.cell_types import CELL_TYPES
from pipelines.report import CAPTIONS, build_report, model_table, report_context

GOBLET, STROMAL = CELL_TYPES.index("goblet"), CELL_TYPES.index("stromal")


def _meta(steps: int, best: int) -> dict:
    return {"best_step": best, "best_val_loss": 1.25, "params": {"steps": steps,
                                                                  "batch_size": 64},
            "steps_per_s": 5.0, "init": "random (no ImageNet weights)",
            "history": [{"step": best, "val_loss": 1.25, "train_loss": 1.5}]}


def _predictions() -> pl.DataFrame:
    """Fold 0 right on every nucleus; fold 1 calls everything stromal; one unlabelled nucleus."""
    truth = [GOBLET] * 6 + [STROMAL] * 4
    return pl.DataFrame({
        "nucleus_id": [f"n{i}" for i in range(21)],
        "slide_id": ["A"] * 10 + ["B"] * 11,
        "fold": pl.Series([0] * 10 + [1] * 11, dtype=pl.Int16),
        "class_index": pl.Series(truth + truth + [-1], dtype=pl.Int16),
        "predicted_index": pl.Series(truth + [STROMAL] * 11, dtype=pl.Int16),
    })


def test_report_metrics_header_figures_and_notes() -> None:
    meta = {0: _meta(100, 75), 1: _meta(100, 100)}
    context = report_context(meta, 5, 12, 20, "the synthetic demo cohort")
    assert context == {"data": "the synthetic demo cohort", "patients / slides": "12 / 20",
                       "folds evaluated": "2 of 5", "training": "100 steps at batch 64",
                       "initialisation": "random (no ImageNet weights)"}
    report = build_report(_predictions(), meta, context, [], ["fold 2 has no checkpoint"],
                          lambda name: f"figs/{name}")
    assert report.n_labelled == 20
    goblet = report.summary.filter(pl.col("cell_type") == "goblet").row(0, named=True)
    assert goblet["test_nuclei"] == 12 and goblet["accuracy_mean"] == 0.5
    assert goblet["folds_with_predictions"] == 1 and goblet["predicted_per_fold"] == "6 / 0"
    stromal = report.per_fold.filter(pl.col("cell_type") == "stromal").sort("fold")
    assert stromal["ppv"].to_list() == [1.0, 4 / 10]
    overview = report.overview.sort("fold")
    assert overview["balanced_accuracy"].to_list() == [1.0, 0.5]
    assert overview["best_step"].to_list() == [75, 100] and overview["init"][0] == "random"
    # no slide maps: Fig. 5 is left out, every other figure is drawn and linked
    assert set(report.figures) == set(CAPTIONS) - {"fig5_slide_maps.png"}
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in report.figures.values())
    assert "![Per-class accuracy (Fig. 3)](figs/fig3_accuracy.png)" in report.markdown
    assert "**training**: 100 steps at batch 64" in report.markdown
    assert report.markdown.endswith("## Notes\n\n- fold 2 has no checkpoint\n")


def test_model_table_of_no_fold_has_the_columns() -> None:
    empty = model_table({})
    assert empty.height == 0 and empty.columns == ["fold", "best_step", "best_val_loss",
                                                   "steps", "steps_per_s", "init"]
