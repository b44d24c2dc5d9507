"""Per-class metrics, their summary over folds, the report text and the figures."""

import numpy as np
import polars as pl
import pytest

from pipelines.cell_types import CELL_TYPES
from pipelines.evaluate import (
    ReportFigure,
    class_metrics,
    confusion_matrix,
    fold_metrics,
    fold_overview,
    pick_map_slides,
    report_markdown,
    summarise_folds,
)
from pipelines.figures import (
    SlideMap,
    accuracy_figure,
    confusion_figure,
    ppv_npv_figure,
    slide_map_figure,
    validation_figure,
)

PNG = b"\x89PNG\r\n\x1a\n"


def test_confusion_and_one_vs_rest_metrics_by_hand() -> None:
    true = np.array([0, 0, 0, 1, 1, 2, -1])
    pred = np.array([0, 0, 1, 1, 0, 1, 2])
    cm = confusion_matrix(true, pred, 3)
    assert cm.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]  # the unlabelled row is skipped
    m = class_metrics(cm, ["a", "b", "c"])
    row = {r["cell_type"]: r for r in m.iter_rows(named=True)}
    # class a: TP 2, FN 1, FP 1, TN 2 of N 6
    assert row["a"]["accuracy"] == pytest.approx(2 / 3)
    assert row["a"]["ppv"] == pytest.approx(2 / 3)
    assert row["a"]["npv"] == pytest.approx(2 / 3)
    assert row["a"]["prevalence"] == pytest.approx(3 / 6)
    # class b: TP 1, FN 1, FP 2, TN 2
    assert (row["b"]["accuracy"], row["b"]["ppv"], row["b"]["npv"]) == pytest.approx(
        (0.5, 1 / 3, 2 / 3))
    # class c is never predicted: PPV undefined (null), recall 0, NPV 5/6
    assert row["c"]["ppv"] is None and row["c"]["accuracy"] == 0.0
    assert row["c"]["npv"] == pytest.approx(5 / 6)
    assert row["c"]["support"] == 1 and row["c"]["predicted"] == 0


def _predictions() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for fold in range(5):
        true = rng.integers(0, 14, 400)
        pred = np.where(rng.random(400) < 0.6 + 0.05 * fold, true, rng.integers(0, 14, 400))
        frames.append(pl.DataFrame({
            "nucleus_id": np.arange(400) + 1000 * fold,
            "slide_id": [f"f{fold}-s{i % 2}" for i in range(400)],
            "fold": pl.Series([fold] * 400, dtype=pl.Int16),
            "class_index": pl.Series(true, dtype=pl.Int16),
            "predicted_index": pl.Series(pred, dtype=pl.Int16),
        }))
    return pl.concat(frames)


def test_summary_is_mean_and_sample_std_over_folds() -> None:
    preds = _predictions()
    per_fold = fold_metrics(preds)
    assert per_fold.height == 5 * 14
    summary = summarise_folds(per_fold)
    goblet = per_fold.filter(pl.col("cell_type") == "goblet")
    for metric in ("accuracy", "ppv", "npv", "prevalence"):
        values = goblet[metric].to_numpy()
        got = summary.filter(pl.col("cell_type") == "goblet").row(0, named=True)
        assert got[f"{metric}_mean"] == pytest.approx(values.mean())
        assert got[f"{metric}_std"] == pytest.approx(values.std(ddof=1))
    assert summary["test_nuclei"].sum() == 2000
    overview = fold_overview(preds)
    assert overview["test_nuclei"].to_list() == [400] * 5
    first = preds.filter(pl.col("fold") == 0)
    assert overview["accuracy"][0] == pytest.approx(
        (first["class_index"] == first["predicted_index"]).mean())


def test_report_and_figures() -> None:
    preds = _predictions()
    per_fold = fold_metrics(preds)
    summary = summarise_folds(per_fold)
    figures = {
        "a.png": accuracy_figure(per_fold, summary),
        "b.png": ppv_npv_figure(summary),
        "c.png": confusion_figure(confusion_matrix(preds["class_index"].to_numpy(),
                                                   preds["predicted_index"].to_numpy(), 14)),
        "d.png": validation_figure({0: [{"step": 10, "val_loss": 2.0, "train_loss": 2.5},
                                        {"step": 20, "val_loss": 1.5, "train_loss": 1.8}]},
                                   {0: 20}),
    }
    rng = np.random.default_rng(1)
    maps = [SlideMap("s1", rng.random(50) * 300, rng.random(50) * 300, rng.integers(-1, 14, 50),
                     rng.integers(0, 14, 50), vhe=np.full((600, 600, 3), 200, np.uint8)),
            SlideMap("s2", rng.random(50) * 300, rng.random(50) * 300, rng.integers(0, 14, 50),
                     rng.integers(0, 14, 50))]
    figures["e.png"] = slide_map_figure(maps)
    assert all(v.startswith(PNG) and len(v) > 5000 for v in figures.values())
    text = report_markdown(summary, fold_overview(preds),
                           [ReportFigure("Fig", "classifier/a.png", "caption")],
                           {"data": "synthetic"})
    assert "![Fig](classifier/a.png)" in text
    assert "- **data**: synthetic" in text
    assert all(f"| {name} |" in text for name in CELL_TYPES)
    assert "0.83 ± 0.06" in text  # the paper's epithelial PPV is shown for reference


def test_map_slides_take_the_largest_slide_of_each_site() -> None:
    preds = pl.DataFrame({
        "slide_id": ["a"] * 5 + ["b"] * 9 + ["c"] * 7 + ["d"] * 2,
        "class_index": pl.Series([1] * 23, dtype=pl.Int16),
    })
    manifest = pl.DataFrame({"slide_id": ["a", "b", "c", "d"],
                             "site": ["terminal_ileum", "ascending_colon", "ascending_colon",
                                      "terminal_ileum"]})
    assert pick_map_slides(preds, manifest, n=2) == ["b", "a"]
    assert pick_map_slides(preds, manifest, n=3) == ["b", "a", "c"]
