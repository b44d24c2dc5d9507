"""The whole-slide map of an inference: the slide's H&E with a dot per nucleus in its
predicted class's colour, and a legend that counts nuclei per class.

Drawn with Pillow: every slide's inference step draws one, and matplotlib's import and figure
cost about 2 s of a step that predicts in less.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np

from pipelines.cell_types import CELL_TYPES, CLASS_COLOURS
from storage.tiles import DEFAULT_TILE_PX

ReadWindow = Callable[[int, int, int, int], np.ndarray]

# The map's geometry (pixels): the image fits in MAP_MAX_PX, the legend sits to its right.
MAP_MAX_PX, TITLE_H_PX, LEGEND_W_PX, LEGEND_ROW_PX, MARGIN_PX = 900, 26, 190, 16, 8
EMPTY_GREY = (245, 245, 245)


def overview_rgb(
    read_rgb: ReadWindow, height_px: int, width_px: int, max_px: int = 1200,
    tile_px: int = DEFAULT_TILE_PX,
) -> tuple[np.ndarray, int]:
    """Every `step`-th pixel of an RGB image read tile by tile, so that neither side exceeds
    `max_px`; returns (rgb, step)."""
    step = max(1, -(-max(height_px, width_px) // max_px))
    tile = max(step, tile_px // step * step)
    out = np.empty((-(-height_px // step), -(-width_px // step), 3), np.uint8)
    for y0 in range(0, height_px, tile):
        for x0 in range(0, width_px, tile):
            y1, x1 = min(height_px, y0 + tile), min(width_px, x0 + tile)
            block = read_rgb(y0, x0, y1, x1)[::step, ::step]
            out[y0 // step : y0 // step + block.shape[0],
                x0 // step : x0 // step + block.shape[1]] = block
    return out, step


def dot_radius_px(n_nuclei: int) -> int:
    """Dots shrink as nuclei crowd: 3 px for a small field, 1 px past about 20,000 nuclei."""
    return int(np.clip(round(3 * np.sqrt(2_000 / max(n_nuclei, 1))), 1, 3))


def inference_map_png(
    slide_id: str,
    centroid_y_um: np.ndarray,
    centroid_x_um: np.ndarray,
    predicted_index: np.ndarray,
    background: np.ndarray | None,
    background_mpp: float,
    models: str,
    cell_types: Sequence[str] = CELL_TYPES,
) -> bytes:
    """The slide's H&E (`background`, at `background_mpp` µm/px; light grey when None) with
    every nucleus centroid as a dot in its predicted class's colour, scaled so the image's
    longer side is at most MAP_MAX_PX; the title names the models, the legend counts nuclei
    per class."""
    from PIL import Image, ImageDraw, ImageFont

    idx = np.asarray(predicted_index, np.int64)
    cy, cx = np.asarray(centroid_y_um, np.float64), np.asarray(centroid_x_um, np.float64)
    if background is not None:
        h_um, w_um = background.shape[0] * background_mpp, background.shape[1] * background_mpp
    else:
        h_um = float(cy.max()) + 1.0 if cy.size else 1.0
        w_um = float(cx.max()) + 1.0 if cx.size else 1.0
    px_per_um = MAP_MAX_PX / max(h_um, w_um)
    map_h, map_w = max(1, round(h_um * px_per_um)), max(1, round(w_um * px_per_um))
    height = max(TITLE_H_PX + map_h + MARGIN_PX,
                 TITLE_H_PX + len(cell_types) * LEGEND_ROW_PX + MARGIN_PX)
    image = Image.new("RGB", (map_w + LEGEND_W_PX + 2 * MARGIN_PX, height), "white")
    if background is not None:
        tissue = Image.fromarray(np.ascontiguousarray(background[..., :3]), "RGB")
        image.paste(tissue.resize((map_w, map_h), Image.Resampling.BILINEAR),
                    (MARGIN_PX, TITLE_H_PX))
    else:
        image.paste(Image.new("RGB", (map_w, map_h), EMPTY_GREY), (MARGIN_PX, TITLE_H_PX))
    draw = ImageDraw.Draw(image)
    radius = dot_radius_px(len(idx))
    ys = TITLE_H_PX + cy * px_per_um
    xs = MARGIN_PX + cx * px_per_um
    for y, x, k in zip(ys.tolist(), xs.tolist(), idx.tolist(), strict=True):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius),
                     fill=tuple(CLASS_COLOURS[cell_types[k]]))
    title_font, font = ImageFont.load_default(size=13), ImageFont.load_default(size=11)
    draw.text((MARGIN_PX, TITLE_H_PX / 2), f"{slide_id}: predicted cell types of {len(idx)} "
              f"nuclei, {models}", fill="black", font=title_font, anchor="lm")
    counts = np.bincount(idx, minlength=len(cell_types))
    left = MARGIN_PX * 2 + map_w
    for i, name in enumerate(cell_types):
        y = TITLE_H_PX + i * LEGEND_ROW_PX + LEGEND_ROW_PX / 2
        draw.ellipse((left, y - 4, left + 8, y + 4), fill=tuple(CLASS_COLOURS[name]))
        draw.text((left + 14, y), f"{name} ({counts[i]})", fill="black", font=font, anchor="lm")
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()
