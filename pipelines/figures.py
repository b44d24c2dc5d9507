"""The report's figures as PNG bytes: per-class accuracy (Fig. 3), PPV / NPV / prevalence with a
PPV cut-off (Fig. 4), whole-slide maps (Fig. 5), confusion matrix and validation curves.

Figures are drawn on matplotlib's Agg canvas without pyplot, so they are safe in worker
threads; callers write the bytes where they belong.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipelines.cell_types import CELL_TYPES, CLASS_COLOURS
from pipelines.evaluate import PPV_CUTOFF


def png_bytes(fig: Figure, dpi: int = 110, *, tight: bool = True) -> bytes:
    """PNG bytes of a matplotlib figure at `dpi`; `tight` crops it to what is drawn."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buf.getvalue()


def _colour(cell_type: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    r, g, b = CLASS_COLOURS[cell_type]
    return (r / 255, g / 255, b / 255, alpha)


def accuracy_figure(per_fold: pl.DataFrame, summary: pl.DataFrame) -> bytes:
    """Fig. 3: per-class accuracy, mean ± std bars with each fold as a dot; chance dashed."""
    names = summary["cell_type"].to_list()
    x = np.arange(len(names))
    fig = Figure(figsize=(9, 3.8))
    ax = fig.add_subplot()
    mean = summary["accuracy_mean"].fill_null(np.nan).to_numpy()
    std = summary["accuracy_std"].fill_null(0.0).to_numpy()
    ax.bar(x, mean, yerr=std, capsize=3, color=[_colour(n, 0.85) for n in names],
           edgecolor="black", linewidth=0.5)
    for i, name in enumerate(names):
        vals = per_fold.filter(pl.col("cell_type") == name)["accuracy"].drop_nulls().to_numpy()
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.2, 0.2, max(len(vals), 1))[: len(vals)],
                   vals, s=9, color="black", zorder=3)
    ax.axhline(1 / len(CELL_TYPES), color="grey", linestyle="--", linewidth=1,
               label=f"chance (1/{len(CELL_TYPES)})")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (recall) on test patients")
    ax.set_title("Per-class accuracy, 5-fold patient-level cross-validation")
    ax.legend(loc="upper right", fontsize=8)
    return png_bytes(fig)


def ppv_npv_figure(summary: pl.DataFrame, cutoff: float = PPV_CUTOFF) -> bytes:
    """Fig. 4: PPV, NPV and prevalence per class (mean ± sample std over the folds where each is
    defined); classes not flagged above the PPV cut-off (with enough predictions in every fold)
    are faded; a class whose PPV some fold left undefined is labelled with the folds it has."""
    names = [name if ppv_folds == folds else f"{name} (PPV {ppv_folds}/{folds} folds)"
             for name, ppv_folds, folds in summary.select(
                 "cell_type", "ppv_folds", "folds").iter_rows()]
    x = np.arange(len(names))
    width = 0.27
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    learned = summary["ppv_above_cutoff"].to_numpy()
    series = (("ppv", "PPV", "#1f77b4"), ("npv", "NPV", "#2ca02c"),
              ("prevalence", "Prev", "#ff7f0e"))
    for j, (metric, label, colour) in enumerate(series):
        mean = summary[f"{metric}_mean"].fill_null(0.0).to_numpy()
        std = summary[f"{metric}_std"].fill_null(0.0).to_numpy()
        for i in range(len(names)):
            alpha = 1.0 if learned[i] else 0.3
            ax.bar(x[i] + (j - 1) * width, mean[i], width, yerr=std[i], capsize=2,
                   color=colour, alpha=alpha, edgecolor="black", linewidth=0.4,
                   error_kw={"alpha": alpha, "elinewidth": 0.8},
                   label=label if i == 0 else None)
    ax.axhline(cutoff, color="red", linestyle="--", linewidth=1, label=f"PPV cut-off {cutoff}")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean ± sample std over folds")
    ax.set_title("PPV, NPV and prevalence per class (faded: not above the PPV cut-off in "
                 "every fold)")
    ax.legend(loc="upper center", ncols=4, fontsize=8, bbox_to_anchor=(0.5, -0.32))
    return png_bytes(fig)


def confusion_figure(confusion: np.ndarray, cell_types: Sequence[str] = CELL_TYPES) -> bytes:
    """Row-normalised confusion matrix (all folds' test nuclei), counts in the cells."""
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = Figure(figsize=(8, 7))
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    n = len(cell_types)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), cell_types, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), cell_types, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (MxIF-derived label)")
    ax.set_title("Confusion matrix, test nuclei of all folds (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return png_bytes(fig)


def validation_figure(histories: Mapping[int, Sequence[Mapping[str, float]]],
                      best_steps: Mapping[int, int]) -> bytes:
    """Validation (and training) loss per fold against the step; the kept step is marked."""
    fig = Figure(figsize=(7, 3.8))
    ax = fig.add_subplot()
    for fold, history in sorted(histories.items()):
        steps = [h["step"] for h in history]
        line = ax.plot(steps, [h["val_loss"] for h in history], marker="o", markersize=3,
                       label=f"fold {fold}")[0]
        ax.plot(steps, [h["train_loss"] for h in history], linestyle=":",
                color=line.get_color(), linewidth=1)
        best = best_steps.get(fold)
        hit = [h for h in history if h["step"] == best]
        if hit:
            ax.scatter([best], [hit[0]["val_loss"]], s=60, facecolors="none",
                       edgecolors=line.get_color(), zorder=3)
    ax.set_xlabel("step")
    ax.set_ylabel("class-balanced cross-entropy")
    ax.set_title("Validation loss (solid), training loss (dotted); circle: kept weights")
    ax.legend(fontsize=8)
    return png_bytes(fig)


@dataclass(frozen=True)
class SlideMap:
    """One slide for Fig. 5: centroids in µm, true and predicted class indices, and the
    virtual H&E at `vhe_mpp` µm/px (None when it is not available)."""

    slide_id: str
    centroid_y_um: np.ndarray
    centroid_x_um: np.ndarray
    true_index: np.ndarray
    predicted_index: np.ndarray
    vhe: np.ndarray | None = None
    vhe_mpp: float = 0.5


def slide_map_figure(slides: Sequence[SlideMap], cell_types: Sequence[str] = CELL_TYPES) -> bytes:
    """Fig. 5: per slide, virtual H&E | true labels | predicted labels side by side; labels are
    nucleus centroids coloured by class (over a faded virtual H&E when there is one)."""
    n = max(1, len(slides))
    fig = Figure(figsize=(12, 4.2 * n))
    colours = np.array([_colour(c) for c in cell_types] + [(0.6, 0.6, 0.6, 1.0)])
    for r, sm in enumerate(slides):
        extent = None
        if sm.vhe is not None:
            h, w = sm.vhe.shape[:2]
            extent = (0, w * sm.vhe_mpp, h * sm.vhe_mpp, 0)
        panels = (("virtual H&E", None), ("cell labels (MxIF)", sm.true_index),
                  ("predicted labels", sm.predicted_index))
        for c, (title, idx) in enumerate(panels):
            ax = fig.add_subplot(n, 3, r * 3 + c + 1)
            if sm.vhe is not None:
                ax.imshow(sm.vhe, extent=extent, alpha=1.0 if idx is None else 0.35)
            elif idx is None:
                ax.text(0.5, 0.5, "virtual H&E not available\n(materialise virtual_he)",
                        ha="center", va="center", transform=ax.transAxes, fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
            if idx is not None:
                k = np.where(np.asarray(idx) >= 0, idx, len(cell_types))
                ax.scatter(sm.centroid_x_um, sm.centroid_y_um, s=4, c=colours[k],
                           linewidths=0)
                if extent is None:
                    ax.invert_yaxis()
            ax.set_aspect("equal")
            ax.set_title(f"{sm.slide_id}: {title}", fontsize=9)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel("y (µm)", fontsize=8)
    handles = [Line2D([], [], marker="o", linestyle="", color=_colour(c), label=c)
               for c in cell_types]
    fig.legend(handles=handles, loc="lower center", ncols=7, fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.subplots_adjust(bottom=0.12 / n)
    return png_bytes(fig, dpi=100)
