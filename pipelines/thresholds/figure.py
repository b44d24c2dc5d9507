"""The review figure: per stain, a histogram of log1p(mean intensity) with its threshold."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from pipelines.thresholds.params import MEAN_PREFIX


def review_figure_png(
    slide_id: str, features: pl.DataFrame, thresholds: pl.DataFrame, *, bins: int = 64
) -> bytes:
    """A PNG grid, one panel per stain: histogram of log1p(mean intensity) with the threshold.

    Manual thresholds are drawn in red, automatic ones in blue; the title gives the share of
    nuclei above the threshold, so a person can spot a cut-off that needs correcting.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.figures import png_bytes

    rows = thresholds.sort("stain_key").to_dicts()
    n_cols = min(6, max(1, len(rows)))
    n_rows = max(1, math.ceil(len(rows) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 1.7 * n_rows), squeeze=False)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.08, top=1 - 0.45 / n_rows,
                        wspace=0.15, hspace=0.55)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    for ax, row in zip(axes.ravel(), rows, strict=False):
        values = features[MEAN_PREFIX + row["stain_key"]].to_numpy().astype(np.float64)
        values = values[np.isfinite(values)]
        logs = np.log1p(np.clip(values, 0.0, None))
        cut = math.log1p(max(row["threshold"], 0.0))
        lo, hi = (min(float(logs.min()), cut), max(float(logs.max()), cut)) if logs.size \
            else (0.0, max(cut, 1.0))
        counts, edges = np.histogram(logs, bins=bins, range=(lo, hi + 1e-9))
        # log10(1 + count): rare positive nuclei stay visible beside the negative bulk
        ax.stairs(np.log10(1.0 + counts), edges, fill=True, color="0.6")
        colour = "tab:red" if row["source"] == "manual" else "tab:blue"
        ax.axvline(cut, color=colour, lw=1.5)
        share = float((values > row["threshold"]).mean()) if values.size else 0.0
        ax.set_title(f"{row['stain']} ({row['source']}) {100 * share:.1f}% +", fontsize=8)
        ax.set_yticks([])
        ax.set_xticks([round(lo, 1), round(hi, 1)])
        ax.tick_params(labelsize=6, length=2)
    fig.suptitle(f"{slide_id}: log1p(mean intensity) per nucleus, log10(1 + count)",
                 fontsize=9)
    png = png_bytes(fig, dpi=80, tight=False)
    plt.close(fig)
    return png
