"""The paper's evaluation (§3): per-class accuracy, PPV, NPV and prevalence on each fold's test
patients, mean ± standard deviation over folds, confusion matrices, and the report text.

Metrics are one-vs-rest per class on labelled test nuclei (class_index >= 0):
accuracy = TP / (TP + FN) (recall), PPV = TP / (TP + FP), NPV = TN / (TN + FN),
prevalence = (TP + FN) / N. A metric with a zero denominator is undefined (null): a class no
fold predicted has no PPV there. Undefined values are never averaged away unseen: the summary
counts the folds in which each metric is defined and lists the predicted nuclei per fold.
The spread over folds is the sample standard deviation (ddof = 1) over those folds. Beside the
fold mean, PPV and NPV are also pooled over every fold's test nuclei, with a 95 % Wilson
interval. "PPV above the cut-off" needs at least MIN_PREDICTED_PER_FOLD predicted nuclei in
every fold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.cell_types import CELL_TYPES
from pipelines.markdown import markdown_table

METRICS: tuple[str, ...] = ("accuracy", "ppv", "npv", "prevalence")
PPV_CUTOFF = 0.3
# A fold's PPV from fewer predicted nuclei than this is too thin to flag a class as learned.
MIN_PREDICTED_PER_FOLD = 20
WILSON_Z = 1.959964  # two-sided 95 %

# §3: PPV, NPV and prevalence the paper reports (mean ± std over its five folds).
PAPER_VALUES: dict[str, dict[str, tuple[float, float]]] = {
    "helper_t": {"ppv": (0.34, 0.15), "npv": (0.98, 0.01), "prevalence": (0.03, 0.01)},
    "epithelial": {"ppv": (0.83, 0.06), "npv": (0.82, 0.05), "prevalence": (0.25, 0.04)},
    "progenitor": {"ppv": (0.47, 0.1), "npv": (0.98, 0.01), "prevalence": (0.07, 0.02)},
    "goblet": {"ppv": (0.91, 0.01), "npv": (0.97, 0.0), "prevalence": (0.19, 0.03)},
    "fibroblast": {"ppv": (0.38, 0.03), "npv": (0.96, 0.01), "prevalence": (0.09, 0.02)},
    "stromal": {"ppv": (0.74, 0.03), "npv": (0.74, 0.03), "prevalence": (0.29, 0.03)},
}


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are true classes, columns predicted ones."""
    true = np.asarray(true, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    keep = (true >= 0) & (true < n_classes)
    return np.bincount(
        true[keep] * n_classes + predicted[keep], minlength=n_classes * n_classes
    ).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def class_metrics(
    confusion: np.ndarray, cell_types: Sequence[str] = CELL_TYPES
) -> pl.DataFrame:
    """One row per class: support (true count), predicted count, accuracy, ppv, npv, prevalence."""
    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = n - tp - fn - fp
    return pl.DataFrame({
        "class_index": np.arange(len(cell_types), dtype=np.int16),
        "cell_type": list(cell_types),
        "support": (tp + fn).astype(np.int64),
        "predicted": (tp + fp).astype(np.int64),
        "true_positive": tp.astype(np.int64),
        "predicted_negative": (tn + fn).astype(np.int64),
        "true_negative": tn.astype(np.int64),
        "accuracy": _ratio(tp, tp + fn),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "prevalence": _ratio(tp + fn, np.full_like(tp, n)),
    }).with_columns(pl.col(m).fill_nan(None) for m in METRICS)


def fold_metrics(
    predictions: pl.DataFrame, cell_types: Sequence[str] = CELL_TYPES
) -> pl.DataFrame:
    """Per (fold, class) metrics from a frame with fold, class_index and predicted_index."""
    labelled = predictions.filter(pl.col("class_index") >= 0)
    frames = []
    for fold in sorted(labelled["fold"].unique().to_list()):
        part = labelled.filter(pl.col("fold") == fold)
        cm = confusion_matrix(part["class_index"].to_numpy(), part["predicted_index"].to_numpy(),
                              len(cell_types))
        frames.append(class_metrics(cm, cell_types).with_columns(
            pl.lit(fold, dtype=pl.Int16).alias("fold")))
    if not frames:
        return class_metrics(np.zeros((len(cell_types),) * 2), cell_types).with_columns(
            pl.lit(None, dtype=pl.Int16).alias("fold")).clear()
    return pl.concat(frames).select("fold", pl.exclude("fold"))


def wilson_interval(successes: np.ndarray, trials: np.ndarray,
                    z: float = WILSON_Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion (NaN where there are no trials): unlike the normal
    approximation it stays inside [0, 1] and is honest for small counts."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denominator = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def summarise_folds(per_fold: pl.DataFrame,
                    min_predicted: int = MIN_PREDICTED_PER_FOLD,
                    ppv_cutoff: float = PPV_CUTOFF) -> pl.DataFrame:
    """Per class over folds: mean and sample std (ddof = 1) of each metric over the folds where
    it is defined, how many folds those are, the predicted nuclei per fold, PPV and NPV pooled
    over all test nuclei with 95 % Wilson intervals, and whether PPV is above the cut-off with
    enough predictions in every fold to say so."""
    aggs = [
        pl.col("support").sum().alias("test_nuclei"),
        pl.len().alias("folds"),
        (pl.col("predicted") > 0).sum().alias("folds_with_predictions"),
        pl.col("predicted").sort_by("fold").cast(pl.Utf8).str.join(" / ")
        .alias("predicted_per_fold"),
        pl.col("predicted").min().alias("min_predicted"),
        pl.col("true_positive").sum().alias("pooled_true_positive"),
        pl.col("predicted").sum().alias("pooled_predicted"),
        pl.col("true_negative").sum().alias("pooled_true_negative"),
        pl.col("predicted_negative").sum().alias("pooled_predicted_negative"),
    ]
    for m in METRICS:
        aggs += [pl.col(m).mean().alias(f"{m}_mean"), pl.col(m).std(ddof=1).alias(f"{m}_std"),
                 pl.col(m).is_not_null().sum().alias(f"{m}_folds")]
    summary = per_fold.group_by("class_index", "cell_type").agg(aggs).sort("class_index")
    columns = {}
    for name, hits, trials in (("ppv", "pooled_true_positive", "pooled_predicted"),
                               ("npv", "pooled_true_negative", "pooled_predicted_negative")):
        k, n = summary[hits].to_numpy(), summary[trials].to_numpy()
        low, high = wilson_interval(k, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[f"{name}_pooled"] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        columns[f"{name}_wilson_low"], columns[f"{name}_wilson_high"] = low, high
    summary = summary.with_columns(
        pl.Series(k, v).fill_nan(None) for k, v in columns.items())
    return summary.with_columns(
        ((pl.col("ppv_mean") > ppv_cutoff) & (pl.col("min_predicted") >= min_predicted)
         & (pl.col("ppv_folds") == pl.col("folds"))).fill_null(False)
        .alias("ppv_above_cutoff"))


def fold_overview(predictions: pl.DataFrame) -> pl.DataFrame:
    """Per fold: test slides and nuclei, overall accuracy, balanced accuracy (mean recall over
    the classes present)."""
    labelled = predictions.filter(pl.col("class_index") >= 0)
    recall = (
        labelled.group_by("fold", "class_index")
        .agg((pl.col("predicted_index") == pl.col("class_index")).mean().alias("recall"))
        .group_by("fold").agg(pl.col("recall").mean().alias("balanced_accuracy"))
    )
    return (
        labelled.group_by("fold")
        .agg(
            pl.col("slide_id").n_unique().alias("test_slides"),
            pl.len().alias("test_nuclei"),
            (pl.col("predicted_index") == pl.col("class_index")).mean().alias("accuracy"),
        )
        .join(recall, on="fold")
        .sort("fold")
    )


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and np.isnan(std)):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def _interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def metrics_table_markdown(summary: pl.DataFrame, ppv_cutoff: float = PPV_CUTOFF,
                           min_predicted: int = MIN_PREDICTED_PER_FOLD) -> str:
    """The per-class table: mean ± sample std over the folds where a metric is defined (with
    that number of folds when some fold left it undefined), predicted nuclei per fold, pooled
    PPV with its 95 % Wilson interval, and the paper's values where it gives them."""
    lines = [
        "| cell type | test nuclei | accuracy | PPV | predicted per fold | pooled PPV [95 % CI] "
        "| NPV | prevalence | PPV > cut-off | paper PPV / NPV / prevalence |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:---:|---|",
    ]
    for row in summary.iter_rows(named=True):
        paper = PAPER_VALUES.get(row["cell_type"])
        paper_text = " / ".join(_pm(*paper[m]) for m in ("ppv", "npv", "prevalence")) \
            if paper else ""
        cells = []
        for m in METRICS:
            text = _pm(row[f"{m}_mean"], row[f"{m}_std"])
            if 0 < row[f"{m}_folds"] < row["folds"]:
                text += f" ({row[f'{m}_folds']} of {row['folds']} folds)"
            cells.append(text)
        if row["ppv_above_cutoff"]:
            flag = "yes"
        elif row["ppv_mean"] is not None and row["ppv_mean"] > ppv_cutoff:
            flag = f"too few (< {min_predicted} in a fold)"
        else:
            flag = ""
        lines.append(
            f"| {row['cell_type']} | {row['test_nuclei']} | {cells[0]} | {cells[1]} | "
            f"{row['predicted_per_fold']} | "
            f"{_interval(row['ppv_pooled'], row['ppv_wilson_low'], row['ppv_wilson_high'])} | "
            f"{cells[2]} | {cells[3]} | {flag} | {paper_text} |"
        )
    return "\n".join(lines)


def frame_markdown(frame: pl.DataFrame, digits: int = 3) -> str:
    """A small frame as a Markdown table (floats rounded to `digits`, nulls as a dash)."""
    return markdown_table(frame, float_format=f".{digits}f", none="–")


@dataclass(frozen=True)
class ReportFigure:
    title: str
    filename: str
    caption: str


def report_markdown(
    summary: pl.DataFrame,
    overview: pl.DataFrame,
    figures: Sequence[ReportFigure],
    context: Mapping[str, str],
    ppv_cutoff: float = PPV_CUTOFF,
) -> str:
    """The classifier report: data note, per-class table, per-fold table, figures."""
    learned = summary.filter(pl.col("ppv_above_cutoff"))["cell_type"].to_list()
    undefined = summary.filter(pl.col("folds_with_predictions") < pl.col("folds"))
    parts = [
        "# Nucleus classifier: cross-validated evaluation",
        "",
        *(f"- **{k}**: {v}" for k, v in context.items()),
        "",
        "## Per-class metrics on the test patients (mean ± std over folds)",
        "",
        "Accuracy is the recall of each class; PPV, NPV and prevalence are one-vs-rest "
        "(§3). ± is the sample standard deviation (ddof = 1) over the folds in which the "
        "metric is defined; a PPV is undefined in a fold that predicted no nucleus of the "
        "class, and such folds are counted, not averaged in. Pooled PPV counts every fold's "
        "test nuclei together; its interval is the 95 % Wilson interval. A class is flagged "
        f"above the PPV cut-off of {ppv_cutoff} only with at least "
        f"{MIN_PREDICTED_PER_FOLD} predicted nuclei in every fold. The paper's values are "
        "shown for the six classes it reports.",
        "",
        metrics_table_markdown(summary, ppv_cutoff),
        "",
        f"Classes with mean PPV above {ppv_cutoff} (with at least {MIN_PREDICTED_PER_FOLD} "
        "predicted nuclei in every fold): " + (", ".join(learned) if learned else "none") + ".",
        "",
        *([("Never predicted in some fold (PPV undefined there): "
            + ", ".join(f"{r['cell_type']} ({r['folds'] - r['folds_with_predictions']} of "
                        f"{r['folds']} folds)" for r in undefined.iter_rows(named=True))
            + "."), ""] if undefined.height else []),
        "## Folds",
        "",
        frame_markdown(overview),
        "",
    ]
    for fig in figures:
        parts += [f"## {fig.title}", "", f"![{fig.title}]({fig.filename})", "", fig.caption, ""]
    return "\n".join(parts)


def pick_map_slides(
    predictions: pl.DataFrame, manifest: pl.DataFrame, n: int = 2
) -> list[str]:
    """Slides for the whole-slide maps: the test slide with the most labelled nuclei of each
    site first (as Fig. 5 shows one colon and one ileum slide), then the next largest."""
    counts = (
        predictions.filter(pl.col("class_index") >= 0)
        .group_by("slide_id").len()
        .join(manifest.select("slide_id", "site"), on="slide_id", how="left")
        .sort(["len", "slide_id"], descending=[True, False])
    )
    chosen: list[str] = []
    for site in counts["site"].unique(maintain_order=True).to_list():
        first = counts.filter(pl.col("site") == site) if site is not None else counts
        if first.height and len(chosen) < n:
            chosen.append(first["slide_id"][0])
    for slide_id in counts["slide_id"].to_list():
        if len(chosen) >= n:
            break
        if slide_id not in chosen:
            chosen.append(slide_id)
    return chosen


def look_alike_metrics(
    predictions: pl.DataFrame, group: Sequence[str], cell_types: Sequence[str] = CELL_TYPES
) -> pl.DataFrame:
    """PPV and prevalence of each class of `group` among the nuclei that truly belong to it.

    A group of classes that H&E cannot tell apart (the simulator's control group) can still
    differ, as a whole, from the other cells: its members' PPV against the whole slide's
    prevalence then rises with what the pixels do show. Within the group that signal is gone:
    a model that learnt nothing the pixels lack has PPV close to the prevalence there (ratio
    near 1). `predictions` has class_index and predicted_index; PPV is null for a class that
    was never predicted for a nucleus of the group.
    """
    index = {name: i for i, name in enumerate(cell_types)}
    members = [index[name] for name in group]
    inside = predictions.filter(pl.col("class_index").is_in(members))
    rows = []
    for name in group:
        i = index[name]
        predicted = inside.filter(pl.col("predicted_index") == i)
        hits = predicted.filter(pl.col("class_index") == i).height
        support = inside.filter(pl.col("class_index") == i).height
        prevalence = support / inside.height if inside.height else None
        ppv = hits / predicted.height if predicted.height else None
        rows.append({"cell_type": name, "group_nuclei": inside.height, "support": support,
                     "predicted": predicted.height, "ppv_in_group": ppv,
                     "prevalence_in_group": prevalence,
                     "ratio_in_group": ppv / prevalence if ppv is not None and prevalence
                     else None})
    return pl.DataFrame(rows, schema={
        "cell_type": pl.Utf8, "group_nuclei": pl.Int64, "support": pl.Int64,
        "predicted": pl.Int64, "ppv_in_group": pl.Float64, "prevalence_in_group": pl.Float64,
        "ratio_in_group": pl.Float64})
