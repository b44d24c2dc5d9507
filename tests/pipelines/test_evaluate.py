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
    look_alike_metrics,
    metrics_table_markdown,
    pick_map_slides,
    report_markdown,
    summarise_folds,
    wilson_interval,
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


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(np.array([8, 0, 10, 0]), np.array([10, 5, 10, 0]))
    assert low[0] == pytest.approx(0.4902, abs=1e-4)
    assert high[0] == pytest.approx(0.9433, abs=1e-4)
    assert low[1] == 0.0 and high[1] == pytest.approx(0.4345, abs=1e-4)
    assert high[2] == pytest.approx(1.0) and low[2] == pytest.approx(0.7225, abs=1e-4)
    assert np.isnan(low[3]) and np.isnan(high[3])  # no trials: no interval


def _fold_rows(predicted: list[int], true_positive: list[int], support: int = 100,
               n: int = 1000) -> pl.DataFrame:
    """Per-fold metrics of one class ("fibroblast") from its counts, as class_metrics gives."""
    frames = []
    for fold, (pred, tp) in enumerate(zip(predicted, true_positive, strict=True)):
        cm = np.zeros((2, 2), dtype=np.int64)
        cm[0, 0], cm[0, 1] = tp, support - tp  # row: true fibroblast
        cm[1, 0], cm[1, 1] = pred - tp, n - support - (pred - tp)
        frames.append(class_metrics(cm, ["fibroblast", "other"]).with_columns(
            pl.lit(fold, dtype=pl.Int16).alias("fold")))
    return pl.concat(frames).filter(pl.col("cell_type") == "fibroblast")


def test_a_fold_that_predicted_nothing_is_counted_not_averaged_away() -> None:
    # The case seen in a demo report: 1, 0, 15, 80 and 2 predicted nuclei over five folds.
    per_fold = _fold_rows([1, 0, 15, 80, 2], [1, 0, 14, 70, 2])
    row = summarise_folds(per_fold).row(0, named=True)
    assert row["folds"] == 5
    assert row["folds_with_predictions"] == 4 and row["ppv_folds"] == 4
    assert row["predicted_per_fold"] == "1 / 0 / 15 / 80 / 2"
    ppvs = [1.0, 14 / 15, 70 / 80, 1.0]
    assert row["ppv_mean"] == pytest.approx(np.mean(ppvs))
    assert row["ppv_std"] == pytest.approx(np.std(ppvs, ddof=1))
    assert row["ppv_pooled"] == pytest.approx(87 / 98)
    low, high = wilson_interval(np.array([87]), np.array([98]))
    assert (row["ppv_wilson_low"], row["ppv_wilson_high"]) == pytest.approx((low[0], high[0]))
    # a high mean PPV from a handful of predictions is not "learned"
    assert row["ppv_mean"] > 0.3 and row["ppv_above_cutoff"] is False
    table = metrics_table_markdown(summarise_folds(per_fold))
    assert "(4 of 5 folds)" in table and "too few (< 20 in a fold)" in table
    assert "1 / 0 / 15 / 80 / 2" in table


def test_ppv_cutoff_needs_twenty_predictions_in_every_fold() -> None:
    enough = summarise_folds(_fold_rows([20, 25, 40, 30, 22], [10, 12, 20, 15, 11]))
    assert enough["ppv_above_cutoff"].to_list() == [True]
    thin = summarise_folds(_fold_rows([19, 25, 40, 30, 22], [10, 12, 20, 15, 11]))
    assert thin["ppv_above_cutoff"].to_list() == [False]
    low = summarise_folds(_fold_rows([50] * 5, [10] * 5))  # PPV 0.2 everywhere
    assert low["ppv_above_cutoff"].to_list() == [False]


def test_report_names_classes_never_predicted_in_a_fold() -> None:
    preds = _predictions()
    # fold 2 never predicts class 13 (leukocyte): its predictions become class 0
    never = (pl.col("fold") == 2) & (pl.col("predicted_index") == 13)
    preds = preds.with_columns(
        pl.when(never).then(0).otherwise(pl.col("predicted_index"))
        .cast(pl.Int16).alias("predicted_index"))
    summary = summarise_folds(fold_metrics(preds))
    leukocyte = summary.filter(pl.col("cell_type") == "leukocyte").row(0, named=True)
    assert leukocyte["folds_with_predictions"] == 4 and leukocyte["ppv_folds"] == 4
    text = report_markdown(summary, fold_overview(preds), [], {"data": "synthetic"})
    assert "Never predicted in some fold (PPV undefined there): leukocyte (1 of 5 folds)." in text
    assert "sample standard deviation (ddof = 1)" in text
    assert "95 % Wilson interval" in text
    assert ppv_npv_figure(summary).startswith(PNG)


def test_look_alike_metrics_leave_out_what_tells_the_group_from_the_rest() -> None:
    # A model that finds lymphocytes (the group) but guesses among them: 6 helper T and 3
    # leukocytes, all predicted helper T, and 10 epithelial cells, predicted epithelial.
    types = ("epithelial", "helper_t", "leukocyte")
    true = [1] * 6 + [2] * 3 + [0] * 10
    predicted = [1] * 9 + [0] * 10
    frame = pl.DataFrame({"class_index": true, "predicted_index": predicted},
                         schema={"class_index": pl.Int16, "predicted_index": pl.Int16})
    table = look_alike_metrics(frame, ("helper_t", "leukocyte"), types)
    helper = table.row(0, named=True)
    assert helper["group_nuclei"] == 9 and helper["support"] == 6 and helper["predicted"] == 9
    assert helper["ppv_in_group"] == pytest.approx(6 / 9)
    assert helper["prevalence_in_group"] == pytest.approx(6 / 9)
    assert helper["ratio_in_group"] == pytest.approx(1.0)  # no within-group signal
    # against the whole frame's prevalence (6 / 19) the same PPV looks like 2.1x
    assert (6 / 9) / (6 / 19) > 2
    leukocyte = table.row(1, named=True)
    assert leukocyte["predicted"] == 0 and leukocyte["ppv_in_group"] is None
    assert leukocyte["ratio_in_group"] is None
