"""A small MxIF phantom for the virtual H&E and patch tests: crypts of epithelium around a lumen,
lamina propria with collagen and immune cells, empty glass at one side; 27 colon stains."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.stains import COLON_PANEL


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # (stain, h, w) uint16
    stains: tuple[str, ...]
    labels: np.ndarray  # (h, w) int32 nucleus labels
    centroid_y_px: np.ndarray
    centroid_x_px: np.ndarray
    compartment: np.ndarray  # 0 epithelium, 1 stroma, 2 immune


def make_phantom(height: int = 512, width: int = 640, seed: int = 0, brightness: float = 1.0):
    rng = np.random.default_rng(seed)
    stains = COLON_PANEL
    s = {name: i for i, name in enumerate(stains)}
    img = np.zeros((len(stains), height, width), np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    glass = xx > width * 0.85
    # Crypts: rings of epithelium around lumens.
    crypt = np.zeros((height, width), bool)
    lumen = np.zeros((height, width), bool)
    centres = [(height * fy, width * fx) for fy in (0.25, 0.72) for fx in (0.2, 0.55)]
    for cy, cx in centres:
        d = np.hypot(yy - cy, xx - cx)
        crypt |= (d < 70) & (d >= 28)
        lumen |= d < 28
    stroma = ~crypt & ~lumen & ~glass
    labels = np.zeros((height, width), np.int32)
    cys, cxs, comp = [], [], []
    label = 0
    for _ in range(4000):
        y, x = rng.uniform(8, height - 8), rng.uniform(8, width - 8)
        iy, ix = int(y), int(x)
        if glass[iy, ix] or lumen[iy, ix]:
            continue
        kind = 0 if crypt[iy, ix] else (2 if rng.random() < 0.5 else 1)
        r = {0: 5.5, 1: 4.5, 2: 3.8}[kind]
        ry, rx = (r, r * 1.6) if kind == 1 else (r * 1.2, r)
        y0, y1, x0, x1 = int(y - 9), int(y + 10), int(x - 9), int(x + 10)
        box = ((yy[y0:y1, x0:x1] - y) / ry) ** 2 + ((xx[y0:y1, x0:x1] - x) / rx) ** 2 < 1
        if (labels[y0:y1, x0:x1][box] > 0).any():
            continue
        label += 1
        labels[y0:y1, x0:x1][box] = label
        cys.append(float(yy[y0:y1, x0:x1][box].mean()))
        cxs.append(float(xx[y0:y1, x0:x1][box].mean()))
        comp.append(kind)
    nuclei = labels > 0
    comp_arr = np.array([-1, *comp])
    kinds = comp_arr[labels]
    near = ndimage.grey_dilation(labels, size=5)
    cell = (near > 0) & ~nuclei
    near_kind = comp_arr[near]
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)), 1.0).astype(np.float32)
    img[s["DAPI"]] = nuclei * (900 + 250 * texture)
    img[s["PCNA"]] = nuclei * (kinds == 0) * 200
    img[s["PanCK"]] = crypt * 700
    img[s["BetaCatenin"]] = crypt * 250
    img[s["NaKATPase"]] = (crypt & ~nuclei) * 300
    goblet = crypt & (ndimage.gaussian_filter(rng.random((height, width)), 3) > 0.52)
    img[s["Muc2"]] = goblet * 800
    img[s["Collagen"]] = stroma * (500 + 200 * texture)
    img[s["Vimentin"]] = stroma * 250 + cell * (near_kind == 1) * 400
    img[s["SMA"]] = stroma * (yy < 40) * 900
    img[s["CD45"]] = cell * (near_kind == 2) * 800
    img[s["CD3d"]] = cell * (near_kind == 2) * 600
    img[s["CD68"]] = cell * (near_kind == 2) * (near % 3 == 0) * 700
    tissue = ~glass & ~lumen
    img += (tissue * 60)[None]  # autofluorescence
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    img = np.clip((img + 40) * brightness, 0, 65535).astype(np.uint16)
    return Phantom(
        image=img,
        stains=tuple(stains),
        labels=labels,
        centroid_y_px=np.array(cys),
        centroid_x_px=np.array(cxs),
        compartment=np.array(comp),
    )
