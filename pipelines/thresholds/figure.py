"""The review figure: per stain, a histogram of log1p(mean intensity) with its threshold."""

from __future__ import annotations

import io
import math

import numpy as np
import polars as pl

from pipelines.thresholds.params import MEAN_PREFIX

# The review figure's geometry (pixels) and colours: one panel per stain, six panels a row.
PANEL_W_PX, PANEL_H_PX, TITLE_H_PX, PANEL_MARGIN_PX, PANEL_COLUMNS = 192, 136, 22, 6, 6
HISTOGRAM_GREY, MANUAL_RED, AUTO_BLUE = (153, 153, 153), (214, 39, 40), (31, 119, 180)


def review_figure_png(
    slide_id: str, features: pl.DataFrame, thresholds: pl.DataFrame, *, bins: int = 64
) -> bytes:
    """A PNG grid, one panel per stain: histogram of log1p(mean intensity) with the threshold.

    Manual thresholds are drawn in red, automatic ones in blue; the title gives the share of
    nuclei above the threshold, so a person can spot a cut-off that needs correcting. Bar heights
    are log10(1 + count), so rare positive nuclei stay visible beside the negative bulk. Drawn
    with Pillow: every slide's labelling step draws one, and matplotlib cost several seconds each.
    """
    from PIL import Image, ImageDraw, ImageFont

    rows = thresholds.sort("stain_key").to_dicts()
    n_cols = min(PANEL_COLUMNS, max(1, len(rows)))
    n_rows = max(1, math.ceil(len(rows) / n_cols))
    image = Image.new("RGB", (n_cols * PANEL_W_PX, TITLE_H_PX + n_rows * PANEL_H_PX), "white")
    draw = ImageDraw.Draw(image)
    title_font, font, tick_font = (ImageFont.load_default(size=s) for s in (12, 10, 9))
    draw.text((image.width / 2, TITLE_H_PX / 2), f"{slide_id}: log1p(mean intensity) per "
              "nucleus, log10(1 + count)", fill="black", font=title_font, anchor="mm")
    for i, row in enumerate(rows):
        x0 = (i % n_cols) * PANEL_W_PX
        y0 = TITLE_H_PX + (i // n_cols) * PANEL_H_PX
        left, right = x0 + PANEL_MARGIN_PX, x0 + PANEL_W_PX - PANEL_MARGIN_PX
        top, bottom = y0 + 16, y0 + PANEL_H_PX - 16
        values = features[MEAN_PREFIX + row["stain_key"]].to_numpy().astype(np.float64)
        values = values[np.isfinite(values)]
        logs = np.log1p(np.clip(values, 0.0, None))
        cut = math.log1p(max(row["threshold"], 0.0))
        lo, hi = (min(float(logs.min()), cut), max(float(logs.max()), cut)) if logs.size \
            else (0.0, max(cut, 1.0))
        counts, _ = np.histogram(logs, bins=bins, range=(lo, hi + 1e-9))
        heights = np.log10(1.0 + counts)
        scale = (bottom - top) / max(float(heights.max()), 1e-9)
        width = (right - left) / bins
        for b in np.flatnonzero(heights):
            draw.rectangle((left + b * width, bottom - heights[b] * scale,
                            left + (b + 1) * width, bottom), fill=HISTOGRAM_GREY)
        draw.line((left, bottom, right, bottom), fill="black")
        at = round(left + (cut - lo) / (hi + 1e-9 - lo) * (right - left))
        colour = MANUAL_RED if row["source"] == "manual" else AUTO_BLUE
        draw.line((at, top, at, bottom), fill=colour, width=2)
        share = float((values > row["threshold"]).mean()) if values.size else 0.0
        draw.text(((left + right) / 2, y0 + 8), f"{row['stain']} ({row['source']}) "
                  f"{100 * share:.1f}% +", fill="black", font=font, anchor="mm")
        draw.text((left, bottom + 3), f"{lo:.1f}", fill="black", font=tick_font, anchor="lt")
        draw.text((right, bottom + 3), f"{hi:.1f}", fill="black", font=tick_font, anchor="rt")
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()
