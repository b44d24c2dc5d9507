"""Figures of virtual H&E: a patch gallery per class (like the paper's Fig. 1) and previews.

Everything here returns PNG bytes or arrays; writing them is the caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipelines.cell_types import CELL_TYPES
from storage.png import rgb_png

# The stain that defines each class in Table 1, shown in green beside the virtual H&E patch.
KEY_STAINS: dict[str, str] = {
    "goblet": "Muc2", "endocrine": "CgA", "epithelial": "PanCK", "progenitor": "Sox9",
    "fibroblast": "SMA", "stromal": "Vimentin", "monocyte": "CD11B", "macrophage": "CD68",
    "helper_t": "CD4", "cytotoxic_t": "CD8", "t_cell_receptor": "CD3d", "b_cell": "CD20",
    "myeloid": "Lysozyme", "leukocyte": "CD45",
}


def green(stain_patch: np.ndarray, low: float, high: float) -> np.ndarray:
    """(h, w) stain intensities as (h, w, 3) uint8 in green on black, scaled low..high."""
    scaled = np.clip((np.asarray(stain_patch, np.float32) - low) / max(high - low, 1e-6), 0, 1)
    out = np.zeros((*scaled.shape, 3), np.uint8)
    out[..., 1] = np.round(scaled * 255).astype(np.uint8)
    return out


def window_half_px(patch_px: int, scale: float) -> int:
    """Half the edge, in slide pixels, of the slide window a `patch_px` patch covers
    (`scale`: slide pixels per patch pixel, e.g. 0.5 / 0.32)."""
    return int(np.ceil(patch_px / 2 * scale))


def centroid_window(cy: float, cx: float, half_px: int) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) slide pixels of the window of half-edge `half_px` centred on a nucleus
    centroid; clipped at the top-left edge (a reader clips the far edge)."""
    y, x = round(cy), round(cx)
    return max(0, y - half_px), max(0, x - half_px), y + half_px + 1, x + half_px + 1


def key_stain_pairs(
    patches: Sequence[np.ndarray], windows: Sequence[np.ndarray],
    percentiles: tuple[float, float] = (5, 99.5),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each virtual H&E patch beside its key-stain window in green; all windows of the class
    share one scale, their pooled 5th to 99.5th percentile of stain intensity."""
    low, high = np.percentile(np.concatenate([w.ravel() for w in windows]), percentiles)
    return [(im, green(w, low, high)) for im, w in zip(patches, windows, strict=True)]


def gallery_png(
    examples: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]],
    title: str = "Virtual H&E patches (left) and the key MxIF stain (right) per class",
) -> bytes:
    """A grid: one row per class, each example a (virtual H&E, green stain) pair of patches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.figures import png_bytes

    classes = [c for c in CELL_TYPES if examples.get(c)]
    n_cols = max((len(examples[c]) for c in classes), default=1)
    size = (1.1 * 2 * n_cols + 1.2, 1.1 * len(classes) + 0.6)
    fig, axes = plt.subplots(max(1, len(classes)), 2 * n_cols, figsize=size, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, cell_type in enumerate(classes):
        for k, (he, stain) in enumerate(examples[cell_type]):
            axes[r, 2 * k].imshow(he, interpolation="nearest")
            axes[r, 2 * k + 1].imshow(stain, interpolation="nearest")
        label = f"{cell_type}\n{KEY_STAINS.get(cell_type, '')}"
        axes[r, 0].text(
            -0.1, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7
        )
    fig.suptitle(title, fontsize=8)
    fig.subplots_adjust(left=0.14, right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.08)
    png = png_bytes(fig, dpi=100, tight=False)
    plt.close(fig)
    return png


def thumbnail_png(rgb: np.ndarray, max_px: int = 512) -> bytes:
    """A PNG of an (h, w, 3) uint8 image shrunk by an integer step to at most `max_px`."""
    step = max(1, -(-max(rgb.shape[:2]) // max_px))
    return rgb_png(rgb[::step, ::step])


def colour_statistics(rgb: np.ndarray) -> dict[str, list[float]]:
    """Colour statistics of H&E pixels (..., 3) uint8, to compare renderings with real H&E.

    mean/std per RGB channel; mean/std of optical density OD = -ln((I + 1) / 256) per channel;
    mean/std of the hematoxylin, eosin and DAB amounts of skimage.color.rgb2hed; the mean RGB of
    the darkest 3% of pixels (nuclei) and of light pink pixels (stroma: R > B + 8, total OD
    0.3-1.2), which do not depend on how much of each the tissue holds.
    """
    from skimage.color import rgb2hed

    px = np.asarray(rgb, np.uint8).reshape(-1, 3)
    f = px.astype(np.float64)
    od = -np.log((f + 1.0) / 256.0)
    hed = rgb2hed(px.reshape(-1, 1, 3)).reshape(-1, 3)
    total = od.sum(axis=1)
    pink = (f[:, 0] - f[:, 2] > 8) & (total > 0.3) & (total < 1.2)

    def r(v):
        return [round(float(x), 4) for x in v]

    return {
        "rgb_mean": r(f.mean(0)), "rgb_std": r(f.std(0)),
        "od_mean": r(od.mean(0)), "od_std": r(od.std(0)),
        "hed_mean": r(hed.mean(0)), "hed_std": r(hed.std(0)),
        "nuclei_rgb": r(f[total >= np.quantile(total, 0.97)].mean(0)),
        "stroma_rgb": r(f[pink].mean(0)) if pink.any() else [float("nan")] * 3,
    }
