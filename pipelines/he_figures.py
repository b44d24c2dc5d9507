"""Figures of the real-H&E chain as PNG bytes: segmentations on annotated tiles and stain
harmonisation (real, harmonised and virtual tiles side by side). Agg canvas, no pyplot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from pipelines.figures import png_bytes

TRUTH_RGB = (0, 230, 0)
FOUND_RGB = (255, 214, 0)


@dataclass(frozen=True)
class SegmentationPanel:
    """One annotated tile: its RGB, the hand annotation, what a backend found, a caption."""

    rgb: np.ndarray
    truth: np.ndarray
    found: np.ndarray
    caption: str


def outlines(rgb: np.ndarray, truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The tile with annotated outlines in green and found outlines in yellow (over them)."""
    out = np.array(rgb, np.uint8, copy=True)
    out[find_boundaries(truth, mode="inner")] = TRUTH_RGB
    out[find_boundaries(found, mode="inner")] = FOUND_RGB
    return out


def segmentation_figure(panels: Sequence[SegmentationPanel], title: str) -> bytes:
    """A row of tiles, annotation green, segmentation yellow, each with its caption."""
    fig = Figure(figsize=(4.2 * len(panels), 4.6))
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(outlines(panel.rgb, panel.truth, panel.found))
        ax.set_title(panel.caption, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return png_bytes(fig)


def image_grid_figure(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str],
                      column_labels: Sequence[str], title: str) -> bytes:
    """A grid of RGB tiles, one row per group and one column per kind (e.g. real, harmonised,
    virtual), labelled on both sides."""
    n_rows, n_cols = len(rows), len(column_labels)
    fig = Figure(figsize=(2.6 * n_cols, 2.6 * n_rows + 0.6))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1)
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column_labels[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    fig.suptitle(title, fontsize=10)
    return png_bytes(fig)
