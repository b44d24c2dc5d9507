"""How real is the virtual H&E, and what stain harmonisation does to real H&E.

Run: python -m pytest tests/benchmarks/test_bench_he_realism.py -s
Real: the 192 colorectal H&E tiles of ../shared/data/real_he_colon_tiles (skipped when absent).
Virtual: Beer-Lambert renderings of simulated colon slides (the demo's renderer, in process).
Printed:
- colour statistics (pipelines/vhe/gallery.colour_statistics) of nuclei and stroma;
- the Bhattacharyya distance between 3-D RGB histograms (8 bins per channel, tissue pixels):
  virtual vs real, and, as the floor set by tissue variety alone, one half of the real tiles vs
  the other (the reference method here: the ratio is virtual / floor); then real tiles after
  Reinhard and Macenko harmonisation vs the virtual H&E, against the unharmonised distance;
- alignment of the virtual H&E's hematoxylin (rgb2hed) with the DAPI it was rendered from:
  Pearson r over pixels, and how well it separates nucleus from other pixels (ROC AUC).
HE_BENCH_FIGURES=DIR writes he_harmonisation.png (real, harmonised, virtual tiles) and
he_realism.png (hematoxylin and eosin distributions) there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from pipelines.figures import png_bytes
from pipelines.he_figures import image_grid_figure
from pipelines.he_harmonise import MIN_TISSUE_PIXELS, fit_harmoniser, tissue_pixels
from pipelines.he_stains import stain_densities
from pipelines.patches import PATCH_MPP, PATCH_PX, ResampleGrid, resample_rgb
from pipelines.synthetic.cohort import CohortParams, plan_cohort, simulate_slide
from pipelines.vhe.beer_lambert import BeerLambertBackend
from pipelines.vhe.gallery import colour_statistics

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real_he_colon_tiles"
FIGURE_TILES = ("topic0/C03_14707.tif", "topic0/C03_19207.tif", "topic0/C03_23807.tif")
BINS = 8


def _real() -> dict[str, np.ndarray]:
    files = sorted(REAL.glob("*/*.tif")) if REAL.is_dir() else []
    if not files:
        pytest.skip(f"no real H&E tiles at {REAL}")
    return {f"{p.parent.name}/{p.name}": np.asarray(Image.open(p).convert("RGB")) for p in files}


def _virtual(n_slides: int = 2, side: int = 768):
    """Beer-Lambert virtual H&E of simulated slides at 0.5 µm/px, with DAPI and the truth
    mask on the same grid, and nucleus-centred patches (what the classifier is trained on)."""
    params = CohortParams(n_patients=n_slides, n_slides=n_slides, slide_px=side, seed=5)
    out = []
    for spec in plan_cohort(params)[:n_slides]:
        sim = simulate_slide(spec, params)
        backend = BeerLambertBackend().for_stains(sim.stains, source=sim.slide_id)
        index = [sim.stains.index(s) for s in backend.stains]
        window = sim.image[index]
        fitted = backend.calibrate(window.reshape(len(index), -1).astype(np.float32),
                                   sim.slide_id)
        rgb = fitted.render(window, backend.stains, sim.mpp)
        grid = ResampleGrid.between(sim.mpp, PATCH_MPP)
        cut = grid.align(side) - grid.p if side % grid.p else side
        rgb05 = resample_rgb(np.ascontiguousarray(rgb[:cut, :cut]), grid)
        dapi = sim.image[sim.stains.index("DAPI")].astype(np.float32)
        out.append((rgb, dapi, sim.labels, rgb05))
    patches = []
    for _, _, labels, rgb05 in out:
        h = rgb05.shape[0]
        ids = np.unique(labels)[1:]
        ys, xs = np.nonzero(labels)
        for k in ids[:: max(1, len(ids) // 300)]:
            cy = int(ys[labels[ys, xs] == k].mean() * 0.32 / PATCH_MPP)
            cx = int(xs[labels[ys, xs] == k].mean() * 0.32 / PATCH_MPP)
            if PATCH_PX // 2 <= cy < h - PATCH_PX // 2 and PATCH_PX // 2 <= cx < h - PATCH_PX // 2:
                patches.append(rgb05[cy - 20 : cy + 21, cx - 20 : cx + 21])
    return out, np.stack(patches)


def _histogram(pixels: np.ndarray) -> np.ndarray:
    tissue = tissue_pixels(pixels)
    index = (tissue // (256 // BINS)).astype(np.int64)
    flat = (index[:, 0] * BINS + index[:, 1]) * BINS + index[:, 2]
    counts = np.bincount(flat, minlength=BINS**3).astype(np.float64)
    return counts / counts.sum()


def bhattacharyya(a: np.ndarray, b: np.ndarray) -> float:
    """-ln sum sqrt(p q) of two normalised histograms (0: identical)."""
    return float(-np.log(max(np.sqrt(a * b).sum(), 1e-12)))


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    n_pos = positive.sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2)
                 / (n_pos * (len(score) - n_pos)))


def test_bench_he_realism() -> None:
    real = _real()
    slides, patches = _virtual()
    blank = sorted(n for n, t in real.items() if len(tissue_pixels(t)) < MIN_TISSUE_PIXELS)
    names = sorted(set(real) - set(blank))
    print(f"\n{len(blank)} of {len(real)} real tiles have under {MIN_TISSUE_PIXELS} tissue "
          f"pixels and are left out: {', '.join(blank) or 'none'}")
    real_px = np.concatenate([real[n].reshape(-1, 3) for n in names])
    half_a = np.concatenate([real[n].reshape(-1, 3) for n in names[0::2]])
    half_b = np.concatenate([real[n].reshape(-1, 3) for n in names[1::2]])
    virtual_px = patches.reshape(-1, 3)
    harmonised = {}
    for method in ("reinhard", "macenko"):
        harmonised[method] = {n: fit_harmoniser(method, real[n], virtual_px)(real[n])
                              for n in names}
    print(f"real: {len(names)} tiles; virtual: {len(slides)} Beer-Lambert slides, "
          f"{len(patches)} nucleus patches at {PATCH_MPP} µm/px")
    rows = {"real H&E": real_px, "virtual H&E (Beer-Lambert)": virtual_px}
    rows.update({f"real, {m}": np.concatenate([h[n].reshape(-1, 3) for n in names])
                 for m, h in harmonised.items()})
    print(f"{'':30} {'nuclei RGB':>20} {'stroma RGB':>20} {'H mean':>7} {'E mean':>7}")
    stats = {k: colour_statistics(v) for k, v in rows.items()}
    for name, s in stats.items():
        print(f"{name:30} {_rgb(s['nuclei_rgb']):>20} {_rgb(s['stroma_rgb']):>20} "
              f"{s['hed_mean'][0]:7.4f} {s['hed_mean'][1]:7.4f}")
    virtual_h = _histogram(virtual_px)
    floor = bhattacharyya(_histogram(half_a), _histogram(half_b))
    raw = bhattacharyya(_histogram(real_px), virtual_h)
    print(f"RGB-histogram Bhattacharyya distance: real half vs real half {floor:.3f} (floor); "
          f"virtual vs real {raw:.3f} ({raw / floor:.1f}x the floor)")
    for method in harmonised:
        d = bhattacharyya(_histogram(rows[f"real, {method}"]), virtual_h)
        print(f"  real after {method} vs virtual: {d:.3f} ({d / raw:.2f}x the unharmonised)")
    rs, aucs = [], []
    for rgb, dapi, labels, _ in slides:
        h = stain_densities(rgb)[..., 0].ravel()
        rs.append(float(np.corrcoef(h, dapi.ravel())[0, 1]))
        aucs.append(_auc(h, labels.ravel() > 0))
    print(f"virtual hematoxylin vs DAPI: Pearson r {np.mean(rs):.3f}; nucleus-pixel ROC AUC "
          f"of hematoxylin {np.mean(aucs):.3f} (over {len(slides)} slides)")
    _figures(real, harmonised, slides, stats)
    assert raw > floor


def _rgb(v) -> str:
    return "(" + ", ".join(f"{x:.0f}" for x in v) + ")"


def _figures(real, harmonised, slides, stats) -> None:
    folder = os.environ.get("HE_BENCH_FIGURES")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    rgb05 = slides[0][3]
    corners = [(0, 0), (0, rgb05.shape[1] - 224), (rgb05.shape[0] - 224, 0)]
    virtual_tiles = [rgb05[y : y + 224, x : x + 224] for y, x in corners]
    rows = [[real[n], harmonised["reinhard"][n], harmonised["macenko"][n], virtual_tiles[i]]
            for i, n in enumerate(FIGURE_TILES)]
    png = image_grid_figure(rows, [n.split("/")[1] for n in FIGURE_TILES],
                            ["real H&E", "Reinhard", "Macenko", "virtual H&E (0.5 µm/px)"],
                            "Stain harmonisation towards the virtual H&E")
    (Path(folder) / "he_harmonisation.png").write_bytes(png)
    fig = Figure(figsize=(9, 3.2))
    real_px = np.concatenate([r.reshape(-1, 3) for r in real.values()])
    virtual_px = np.concatenate([s[3].reshape(-1, 3) for s in slides])
    for k, name in enumerate(("hematoxylin", "eosin")):
        ax = fig.add_subplot(1, 3, k + 1)
        for label, px in (("real", real_px), ("virtual", virtual_px),
                          ("real, Reinhard", np.concatenate(
                              [h.reshape(-1, 3) for h in harmonised["reinhard"].values()]))):
            values = stain_densities(tissue_pixels(px)[None])[0, :, k]
            ax.hist(values, bins=80, range=(0, 0.12 if k == 0 else 0.25), density=True,
                    histtype="step", label=label)
        ax.set_title(f"{name} (rgb2hed), tissue pixels", fontsize=9)
        ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 3)
    for i, (label, s) in enumerate(stats.items()):
        for j, part in enumerate(("nuclei_rgb", "stroma_rgb")):
            ax.add_patch(_swatch(i, j, s[part]))
        ax.text(2.1, i + 0.5, label, va="center", fontsize=7)
    ax.set_xlim(0, 4.5)
    ax.set_ylim(len(stats), 0)
    ax.set_xticks([0.5, 1.5], ["nuclei", "stroma"])
    ax.set_yticks([])
    ax.set_title("mean colours", fontsize=9)
    (Path(folder) / "he_realism.png").write_bytes(png_bytes(fig))


def _swatch(i: int, j: int, rgb):
    from matplotlib.patches import Rectangle

    return Rectangle((j, i), 1, 1, color=tuple(np.clip(np.array(rgb) / 255, 0, 1)))
