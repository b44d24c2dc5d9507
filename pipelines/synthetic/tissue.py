"""Tissue layout of a colon or ileum mucosa field: regions and where each nucleus sits.

Coordinates are pixels of the canonical frame (muscularis along the bottom edge); `render`
rotates the finished slide. Distances are drawn in µm and converted with the slide's mpp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.synthetic.panel import PROFILES

LUMEN, LAMINA_PROPRIA, EPITHELIUM, MUSCULARIS = 0, 1, 2, 3
REGION_NAMES: tuple[str, ...] = ("lumen", "lamina_propria", "epithelium", "muscularis")
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)
_PROFILE_INDEX = {name: i for i, name in enumerate(PROFILE_NAMES)}

# Lamina propria composition per condition (profile -> share), calibrated so that the labelled
# nuclei of the demo cohort come close to the paper's prevalences (§3): the lamina propria is
# mostly stromal cells; active Crohn's is immune-rich.
_LP_MIX: dict[str, dict[str, float]] = {
    "normal": {
        "stromal": 0.766, "fibroblast": 0.03, "helper_t": 0.065, "cytotoxic_t": 0.012,
        "t_cell_receptor": 0.01, "b_cell": 0.015, "macrophage": 0.025, "monocyte": 0.012,
        "myeloid": 0.004, "leukocyte": 0.012, "unlabelled_double_t": 0.004,
        "unlabelled_macrophage_t": 0.004, "unlabelled_unstained": 0.011,
    },
    "active_crohns": {
        "stromal": 0.62, "fibroblast": 0.03, "helper_t": 0.095, "cytotoxic_t": 0.025,
        "t_cell_receptor": 0.015, "b_cell": 0.03, "macrophage": 0.04, "monocyte": 0.025,
        "myeloid": 0.02, "leukocyte": 0.02, "unlabelled_double_t": 0.008,
        "unlabelled_macrophage_t": 0.007, "unlabelled_unstained": 0.04,
    },
}
_LP_MIX["inactive_crohns"] = {
    k: 0.5 * (_LP_MIX["normal"][k] + _LP_MIX["active_crohns"][k]) for k in _LP_MIX["normal"]
}
_MUSCULARIS_MIX = {"smooth_muscle": 0.86, "fibroblast": 0.07, "stromal": 0.04, "macrophage": 0.03}
# Nucleus spacing (µm) in the lamina propria by condition, and the muscularis's nucleus density
# relative to it; goblet share of the upper crypt by site and its depletion by condition.
_LP_SPACING_UM = {"normal": 8.6, "inactive_crohns": 8.3, "active_crohns": 8.0}
_MUSCULARIS_SPARSITY = 2.0
_GOBLET_SHARE = {"ascending_colon": 0.7, "terminal_ileum": 0.48}
_GOBLET_DEPLETION = {"normal": 1.0, "inactive_crohns": 0.85, "active_crohns": 0.65}
_IEL_SHARE = {"normal": 0.01, "inactive_crohns": 0.02, "active_crohns": 0.035}
# Share of the crypt (from its base) that is the progenitor zone, and progenitors in it.
_PROGENITOR_ZONE = 0.38
_PROGENITOR_SHARE = 0.62


@dataclass(frozen=True)
class NucleusPlan:
    """Planned nuclei (one entry each): centre (px), major-axis angle (rad, from +x towards +y),
    axes (px), profile index into PROFILE_NAMES, region code, and shape-noise coefficients."""

    y: np.ndarray
    x: np.ndarray
    angle: np.ndarray
    length_px: np.ndarray
    width_px: np.ndarray
    profile: np.ndarray
    region: np.ndarray
    shape: np.ndarray  # (n, 4): cos2 amplitude, phase2, cos3 amplitude, phase3

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Tissue:
    """A field's regions (int8 codes, canonical frame) and its planned nuclei."""

    regions: np.ndarray
    nuclei: NucleusPlan


@dataclass
class _Builder:
    rng: np.random.Generator
    px_per_um: float
    rows: list[tuple[float, float, float, float, float, int, int]]

    def add(self, y: float, x: float, angle: float, profile: str, region: int,
            scale: float = 1.0) -> None:
        m = PROFILES[profile].morphology
        jitter = self.rng.lognormal(0.0, 0.1, size=2)
        length = m.length_um * self.px_per_um * scale * jitter[0]
        width = min(m.width_um * self.px_per_um * scale * jitter[1], length)
        self.rows.append((y, x, angle, length, width, _PROFILE_INDEX[profile], region))

    def plan(self) -> NucleusPlan:
        arr = np.asarray(self.rows, dtype=np.float64).reshape(-1, 7)
        n = arr.shape[0]
        irregular = np.array([PROFILES[PROFILE_NAMES[int(p)]].morphology.irregular
                              for p in arr[:, 5]])
        shape = np.column_stack([
            irregular * self.rng.uniform(0.3, 1.0, n), self.rng.uniform(0, 2 * np.pi, n),
            irregular * self.rng.uniform(0.0, 0.6, n), self.rng.uniform(0, 2 * np.pi, n),
        ])
        return NucleusPlan(
            y=arr[:, 0], x=arr[:, 1], angle=arr[:, 2], length_px=arr[:, 3], width_px=arr[:, 4],
            profile=arr[:, 5].astype(np.int16), region=arr[:, 6].astype(np.int8), shape=shape,
        )


def _pick(rng: np.random.Generator, mix: dict[str, float], n: int) -> list[str]:
    names = list(mix)
    p = np.asarray([mix[k] for k in names], dtype=np.float64)
    return [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]


def _gland_frame(shape: tuple[int, int], cy: float, cx: float, a: float, b: float,
                 theta: float) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Bounding box of an ellipse (semi-axes a along the gland axis, b across) and the gland
    coordinates u (along the axis, towards +y when theta = 0) and v (across) of its pixels."""
    h, w = shape
    ry = np.hypot(a * np.cos(theta), b * np.sin(theta)) + 2
    rx = np.hypot(a * np.sin(theta), b * np.cos(theta)) + 2
    y0, y1 = min(max(int(cy - ry), 0), h), min(max(int(cy + ry) + 1, 0), h)
    x0, x1 = min(max(int(cx - rx), 0), w), min(max(int(cx + rx) + 1, 0), w)
    dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    u = dy * c - dx * s
    v = dy * s + dx * c
    return (slice(y0, y1), slice(x0, x1)), u, v


def _ring_points(a: float, b: float, spacing: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points every ~`spacing` px along an ellipse (u, v) and its outward normal (nu, nv)."""
    t = np.linspace(0.0, 2 * np.pi, 2048, endpoint=False)
    u, v = a * np.cos(t), b * np.sin(t)
    seg = np.hypot(np.diff(u, append=u[0]), np.diff(v, append=v[0]))
    arc = np.concatenate([[0.0], np.cumsum(seg)[:-1]])
    total = float(seg.sum())
    n = max(int(total // spacing), 3)
    s = (np.arange(n) + rng.uniform(0, 1)) * (total / n)
    s = (s + rng.normal(0, 0.12 * spacing, n)) % total
    idx = np.searchsorted(arc, s, side="right") - 1
    ts = t[np.clip(idx, 0, t.size - 1)]
    return a * np.cos(ts), b * np.sin(ts), b * np.cos(ts), a * np.sin(ts)


def _to_image(cy: float, cx: float, theta: float, u: np.ndarray, v: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    y = cy + u * np.cos(theta) + v * np.sin(theta)
    x = cx - u * np.sin(theta) + v * np.cos(theta)
    return y, x


def _epithelial_ring(bld: _Builder, regions: np.ndarray, cy: float, cx: float, a: float,
                     b: float, theta: float, thick: float, crypt: bool, site: str,
                     condition: str) -> None:
    """Rasterise one crypt (lumen inside) or villus (lamina propria inside) and seat its cells."""
    rng = bld.rng
    sl, u, v = _gland_frame(regions.shape, cy, cx, a, b, theta)
    outer = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    inner = (u / (a - thick)) ** 2 + (v / (b - thick)) ** 2 <= 1.0
    patch = regions[sl]
    patch[outer & ~inner] = EPITHELIUM
    patch[inner] = LUMEN if crypt else LAMINA_PROPRIA
    ppu = bld.px_per_um
    depth = (0.3 if crypt else 0.7) * thick  # nuclei sit on the basal side
    pu, pv, nu, nv = _ring_points(a - depth, b - depth, 5.8 * ppu, rng)
    ys, xs = _to_image(cy, cx, theta, pu, pv)
    ny, nx = _to_image(0.0, 0.0, theta, nu, nv)
    radials = np.arctan2(ny, nx)  # outward normal as an image angle (from +x towards +y)
    h, w = regions.shape
    goblet = _GOBLET_SHARE[site] * _GOBLET_DEPLETION[condition]
    for k in range(pu.size):
        y, x = float(ys[k]), float(xs[k])
        if not (-10 <= y < h + 10 and -10 <= x < w + 10):
            continue
        radial = float(radials[k])
        along = float(pu[k]) / a  # +1 at the crypt base (towards the muscularis)
        roll = rng.uniform()
        if roll < _IEL_SHARE[condition]:
            bld.add(y, x, rng.uniform(0, np.pi), "cytotoxic_t", EPITHELIUM)
            continue
        if crypt and along > 1.0 - _PROGENITOR_ZONE:
            if site == "terminal_ileum" and along > 0.8 and rng.uniform() < 0.25:
                name = "paneth"
            else:
                name = "progenitor" if rng.uniform() < _PROGENITOR_SHARE else "epithelial"
        elif rng.uniform() < 0.012:
            name = "unlabelled_epi_stroma"
        elif rng.uniform() < 0.035:
            name = "endocrine"
        elif rng.uniform() < goblet:
            name = "goblet"
        else:
            name = "epithelial"
        angle = radial
        if name == "goblet":  # flattened nucleus pressed against the basement membrane
            angle = radial + np.pi / 2
            shift = (0.12 if crypt else -0.12) * thick
            y += shift * np.sin(radial)
            x += shift * np.cos(radial)
        bld.add(y, x, angle, name, EPITHELIUM)


def _dart_throw(bld: _Builder, regions: np.ndarray, region: int, names: list[str],
                spacing: float, aniso: float, candidates: int, size_scale: float = 1.0) -> None:
    """Seat nuclei of `names` (in order) at random free spots of `region`, keeping centres
    at least 0.93 of the sum of their mean radii apart (x shrunk by `aniso`) and clear of other
    regions, so that elongated or irregular neighbours may touch but rarely overlap."""
    rng = bld.rng
    h, w = regions.shape
    ys = rng.uniform(0, h, candidates)
    xs = rng.uniform(0, w, candidates)
    inside = regions[ys.astype(int), xs.astype(int)] == region
    ys, xs = ys[inside], xs[inside]
    cell = spacing * 1.5
    grid: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
    k = 0
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        if k >= len(names):
            break
        name = names[k]
        m = PROFILES[name].morphology
        r = max(0.5 * spacing, 0.25 * bld.px_per_um * (m.length_um + m.width_um) * size_scale)
        xa = x / aniso
        gy, gx = int(y // cell), int(xa // cell)
        reach = 0.8 * r
        ok = aniso > 1 or all(
            regions[min(max(int(py), 0), h - 1), min(max(int(px), 0), w - 1)] == region
            for py, px in ((y - reach, x), (y + reach, x), (y, x - reach), (y, x + reach)))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                for oy, ox, orad in grid.get((gy + dy, gx + dx), ()):
                    if (oy - y) ** 2 + (ox - xa) ** 2 < (0.93 * (r + orad)) ** 2:
                        ok = False
                        break
                if not ok:
                    break
            if not ok:
                break
        if not ok:
            continue
        grid.setdefault((gy, gx), []).append((y, xa, r))
        angle = rng.normal(0.0, 0.15) if aniso > 1 else rng.uniform(0, np.pi)
        bld.add(y, x, angle, name, region)
        k += 1


def build_tissue(size_px: tuple[int, int], mpp: float, site: str, condition: str,
                 rng: np.random.Generator) -> Tissue:
    """Lay out one mucosa field: a wavy muscularis band at the bottom, a row of crypts above
    it (bases towards the muscularis), lamina propria between them and, in the ileum, villi
    cut across in the upper part. Returns region codes and planned nuclei (canonical frame)."""
    h, w = size_px
    ppu = 1.0 / mpp
    regions = np.full((h, w), LAMINA_PROPRIA, dtype=np.int8)
    bld = _Builder(rng, ppu, [])
    active = condition == "active_crohns"
    # Muscularis mucosae: a band of smooth muscle along the bottom, about 40 µm thick.
    xs = np.arange(w)
    top = h - rng.uniform(32, 48) * ppu + rng.uniform(4, 10) * ppu * np.sin(
        2 * np.pi * xs / (rng.uniform(250, 450) * ppu) + rng.uniform(0, 2 * np.pi))
    regions[np.arange(h)[:, None] >= top[None, :]] = MUSCULARIS
    # Crypts side by side; in the ileum they are shorter and villi fill the upper field.
    ileum = site == "terminal_ileum"
    x = rng.uniform(-20, 10) * ppu
    villus_zone = rng.uniform(0.38, 0.5) * h if ileum else 0.0
    if ileum:
        regions[: int(villus_zone)] = LUMEN
        vx = rng.uniform(-30, 0) * ppu
        while vx < w + 40 * ppu:
            vb = rng.uniform(28, 40) * ppu * (rng.uniform(1.0, 1.4) if active else 1.0)
            va = max(rng.uniform(0.55, 0.8) * villus_zone, 1.3 * vb)
            _epithelial_ring(bld, regions, villus_zone - va + rng.uniform(0, 12) * ppu,
                             vx + vb, va, vb, rng.normal(0, 0.1), rng.uniform(13, 16) * ppu,
                             False, site, condition)
            vx += 2 * vb + rng.uniform(6, 30) * ppu
    while x < w + 30 * ppu:
        b = rng.uniform(26, 34) * ppu * (rng.uniform(0.8, 1.35) if active else 1.0)
        gap = rng.uniform(10, 28) * ppu * (rng.uniform(1.0, 2.2) if active else 1.0)
        cx = x + b
        base = float(top[int(np.clip(cx, 0, w - 1))]) - rng.uniform(6, 18) * ppu
        if ileum:  # the crypt opens into the villus zone
            a = max(0.5 * (base - villus_zone) + rng.uniform(0, 15) * ppu, 1.5 * b)
        else:  # colon crypts run out of the field
            a = max(rng.uniform(0.7, 1.0) * h, 2.0 * b)
        theta = rng.normal(0.0, 0.2 if active else 0.07)
        if not (active and rng.uniform() < 0.12):  # crypt drop-out in active disease
            _epithelial_ring(bld, regions, base - a, cx, a, b, theta,
                             rng.uniform(17, 22) * ppu, True, site, condition)
        x = cx + b + gap
    # Lamina propria and muscularis cells.
    lp_area = float((regions == LAMINA_PROPRIA).sum())
    spacing = _LP_SPACING_UM[condition] * ppu
    n_lp = int(lp_area / (0.95 * spacing**2))
    _dart_throw(bld, regions, LAMINA_PROPRIA, _pick(rng, _LP_MIX[condition], n_lp), spacing,
                1.0, 8 * n_lp + 64)
    mus_area = float((regions == MUSCULARIS).sum())
    n_mus = int(mus_area / (_MUSCULARIS_SPARSITY * spacing**2))
    _dart_throw(bld, regions, MUSCULARIS, _pick(rng, _MUSCULARIS_MIX, n_mus), 0.6 * spacing,
                2.4, 8 * n_mus + 64, size_scale=0.45)
    return Tissue(regions=regions, nuclei=bld.plan())
