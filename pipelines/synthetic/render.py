"""Render a planned tissue field into MxIF stain images, a nucleus instance mask and truth.

Each cell gets a nucleus (label mask) and a cell body (nearest-nucleus territory within its
cytoplasm margin and its own tissue region). A stain is painted per localisation — nucleus
(with chromatin texture), cytoplasm, or membrane (a bright cell border plus the en-face
membrane over the whole cell) — then blurred by the optics, mixed by spillover, scaled by the
slide's per-stain gain, lifted by background and autofluorescence, and made noisy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

from pipelines.errors import PipelineError
from pipelines.gaussian import gaussian_blur
from pipelines.synthetic._table1 import table1_cell_type
from pipelines.synthetic.panel import (
    BRIGHTNESS,
    LOCALISATION,
    MEMBRANE,
    NUCLEUS,
    PROFILES,
    SPILLOVER,
    STAINS,
)
from pipelines.synthetic.tissue import (
    LAMINA_PROPRIA,
    LUMEN,
    MUSCULARIS,
    PROFILE_NAMES,
    NucleusPlan,
    Tissue,
)

_GRANULAR = frozenset({"Lysozyme", "CD68", "CgA", "OLFM4", "Muc2"})
_BLUR_SIGMA_PX = 1.0
_MIN_VISIBLE = 0.55  # a nucleus mostly hidden under its neighbours is dropped


@dataclass(frozen=True)
class RenderedField:
    """One rendered field: `image` (stain, y, x) uint16 in STAINS order, `labels` (y, x) int32
    (0 background, 1..n nuclei), and per nucleus (row i is label i + 1): `positive` (n, stains)
    bool, `cell_type` (str or None), `profile` and `region` indices, `area_px`."""

    image: np.ndarray
    labels: np.ndarray
    positive: np.ndarray
    cell_type: list[str | None]
    profile: np.ndarray
    region: np.ndarray
    area_px: np.ndarray


def draw_nuclei(plan: NucleusPlan, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise planned nuclei in order (an earlier nucleus keeps contested pixels) and
    relabel the visible ones 1..n; returns (labels, index into the plan of each kept label)."""
    h, w = shape
    labels = np.zeros(shape, dtype=np.int32)
    expected = np.pi * plan.length_px * plan.width_px / 4.0
    for i in range(plan.n):
        a, b = plan.length_px[i] / 2.0, plan.width_px[i] / 2.0
        cy, cx, th = plan.y[i], plan.x[i], plan.angle[i]
        r = int(np.ceil(a * 1.3)) + 1
        y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, h)
        x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        u = (dx * np.float32(np.cos(th) / a) + dy * np.float32(np.sin(th) / a))
        v = (dy * np.float32(np.cos(th) / b) - dx * np.float32(np.sin(th) / b))
        r2 = u * u + v * v
        # Irregular outline 1 + a2 cos(2 phi + p2) + a3 cos(3 phi + p3), phi = atan2(v, u).
        amp2, ph2, amp3, ph3 = plan.shape[i]
        c, s_ = u / np.sqrt(r2 + np.float32(1e-12)), v / np.sqrt(r2 + np.float32(1e-12))
        c2, s2 = c * c - s_ * s_, 2 * c * s_
        c3, s3 = c * c2 - s_ * s2, s_ * c2 + c * s2
        edge = (1.0 + amp2 * (c2 * np.cos(ph2) - s2 * np.sin(ph2))
                + amp3 * (c3 * np.cos(ph3) - s3 * np.sin(ph3)))
        inside = r2 <= edge * edge
        patch = labels[y0:y1, x0:x1]
        patch[inside & (patch == 0)] = i + 1
    counts = np.bincount(labels.ravel(), minlength=plan.n + 1)[1:]
    keep = np.flatnonzero(counts >= np.maximum(_MIN_VISIBLE * expected, 12.0))
    lut = np.zeros(plan.n + 1, dtype=np.int32)
    lut[keep + 1] = np.arange(1, keep.size + 1, dtype=np.int32)
    return lut[labels], keep


def draw_positivity(profiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """True per-stain positivity (n, stains) of cells with the given profile indices."""
    out = np.zeros((profiles.size, len(STAINS)), dtype=bool)
    col = {s: j for j, s in enumerate(STAINS)}
    out[:, col["DAPI"]] = True
    for p, name in enumerate(PROFILE_NAMES):
        rows = np.flatnonzero(profiles == p)
        if rows.size == 0:
            continue
        prof = PROFILES[name]
        for stain in prof.always:
            out[rows, col[stain]] = True
        for stain, prob in prof.optional:
            out[rows, col[stain]] = rng.uniform(size=rows.size) < prob
    return out


def _cell_bodies(labels: np.ndarray, regions: np.ndarray, cyto_px: np.ndarray,
                 cell_region: np.ndarray) -> np.ndarray:
    """Cell-body label map: each pixel joins its nearest nucleus when within that cell's
    cytoplasm margin and in the same tissue region (epithelial cells fill their territory)."""
    dist, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    owner = labels[iy, ix]
    ok = (dist <= cyto_px[owner]) & (regions == cell_region[owner])
    body = np.where(ok, owner, 0).astype(np.int32)
    body[labels > 0] = labels[labels > 0]
    return body


def _noise_field(rng: np.random.Generator, shape: tuple[int, int],
                 sigma: float | tuple[float, float]) -> np.ndarray:
    """Smooth Gaussian noise (zero mean, unit sd) with correlation length `sigma` px."""
    field = gaussian_blur(rng.standard_normal(shape, dtype=np.float32), sigma, truncate=2.5)
    field /= max(float(field.std()), 1e-6)
    return field


def _cell_types(positive: np.ndarray) -> list[str | None]:
    """Table 1 per row of a positivity matrix (evaluated once per distinct row)."""
    unique, inverse = np.unique(positive, axis=0, return_inverse=True)
    types = [table1_cell_type(dict(zip(STAINS, row.tolist(), strict=True))) for row in unique]
    return [types[i] for i in inverse.ravel().tolist()]


def render_field(tissue: Tissue, rng: np.random.Generator, mpp: float) -> RenderedField:
    """Paint every stain of a planned field and record its truth (canonical frame)."""
    regions = tissue.regions
    shape = regions.shape
    labels, kept = draw_nuclei(tissue.nuclei, shape)
    n = kept.size
    profile = tissue.nuclei.profile[kept]
    region = tissue.nuclei.region[kept]
    positive = draw_positivity(profile, rng)
    cell_type = _cell_types(positive)
    for name_idx, ct in zip(profile.tolist(), cell_type, strict=True):
        if ct != PROFILES[PROFILE_NAMES[name_idx]].cell_type:
            raise PipelineError(f"Simulated {PROFILE_NAMES[name_idx]!r} cell reads as {ct!r} "
                                "under Table 1; fix its profile in pipelines/synthetic/panel.py.")
    morph = [PROFILES[PROFILE_NAMES[p]].morphology for p in profile.tolist()]
    ppu = 1.0 / mpp
    cyto_px = np.array([0.0] + [m.cytoplasm_um * ppu if m.cytoplasm_um > 0 else np.inf
                                for m in morph], dtype=np.float64)
    cell_region = np.concatenate([[-1], region]).astype(np.int8)
    body = _cell_bodies(labels, regions, cyto_px, cell_region)
    isnuc = labels > 0
    in_body = body > 0
    ring = find_boundaries(body, mode="inner") & in_body
    tex = _noise_field(rng, shape, 0.9)
    clumps = _noise_field(rng, shape, 2.2)
    granules = np.clip(1.0 + 0.7 * _noise_field(rng, shape, 0.8), 0.1, None)
    w_mem = (0.4 * in_body + ring).astype(np.float32)
    w_cyt = (in_body * (1.0 - 0.45 * isnuc)).astype(np.float32)
    w_gran = w_cyt * granules
    w_nuc = (isnuc * np.clip(1.0 + 0.2 * tex, 0.3, None)).astype(np.float32)
    # Chromatin: class brightness, texture and a brighter rim (marginated chromatin).
    dapi_l = np.array([0.0] + [m.dapi for m in morph], dtype=np.float32)
    tex_l = np.array([0.0] + [m.texture for m in morph], dtype=np.float32)
    rim_l = np.array([0.0] + [m.rim for m in morph], dtype=np.float32)
    rim = find_boundaries(labels, mode="inner") & isnuc
    chroma = dapi_l[labels] * np.clip(
        1.0 + tex_l[labels] * (0.6 * tex + 0.4 * clumps) + rim_l[labels] * rim, 0.15, None)
    # Per-cell brightness of each positive stain (cells vary; a few are dim), in counts.
    cell_gain = rng.lognormal(0.0, 0.15, size=(n, 1))
    levels = np.zeros((n + 1, len(STAINS)), dtype=np.float32)
    levels[1:] = positive * cell_gain * rng.lognormal(0.0, 0.28, size=(n, len(STAINS)))
    levels *= np.asarray([BRIGHTNESS[s] for s in STAINS], dtype=np.float32)
    # Tissue fields outside cells: smooth muscle fibres, collagen, luminal mucus.
    muscle = (regions == MUSCULARIS) * np.clip(
        0.6 + 0.3 * _noise_field(rng, shape, (1.0, 7.0)), 0.0, None)
    ecm = ((regions == LAMINA_PROPRIA) & ~in_body) * np.clip(
        0.18 + 0.2 * _noise_field(rng, shape, 2.0), 0.0, None)
    mucus = (regions == LUMEN) * np.clip(0.12 * _noise_field(rng, shape, 6.0), 0.0, None)
    extra = {"SMA": muscle, "Actinin": 0.8 * muscle, "Collagen": ecm, "Muc2": mucus}
    clean = np.empty((len(STAINS), *shape), dtype=np.float32)
    for j, stain in enumerate(STAINS):
        if stain == "DAPI":
            img = chroma * np.float32(BRIGHTNESS[stain])
        elif LOCALISATION[stain] == NUCLEUS:
            img = levels[:, j][labels] * w_nuc
        elif LOCALISATION[stain] == MEMBRANE:
            img = levels[:, j][body] * w_mem
        else:
            img = levels[:, j][body] * (w_gran if stain in _GRANULAR else w_cyt)
        if stain in extra:
            img += (extra[stain] * BRIGHTNESS[stain]).astype(np.float32)
        gaussian_blur(img, _BLUR_SIGMA_PX, truncate=2.0, out=clean[j])
    # Lipofuscin: granular autofluorescence in macrophage cytoplasm, seen in every stain.
    lipo = (body > 0) & np.isin(body, 1 + np.flatnonzero(
        profile == PROFILE_NAMES.index("macrophage"))) & ~isnuc
    image = _acquire(clean, regions, lipo * granules, rng)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return RenderedField(image, labels, positive, cell_type, profile, region, area)


def _acquire(signal: np.ndarray, regions: np.ndarray, lipofuscin: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Camera model: spillover between stains, per-stain gain (slide-specific), background,
    autofluorescence, shot and read noise, quantised to uint16."""
    n_stains, h, w = signal.shape
    gain = rng.lognormal(0.0, 0.35, n_stains).astype(np.float32)
    background = rng.uniform(80, 320, n_stains).astype(np.float32)
    af_counts = rng.uniform(40, 180, n_stains).astype(np.float32)
    tissue = (regions != LUMEN).astype(np.float32)
    af = tissue * np.clip(0.6 + 0.4 * _noise_field(rng, (h, w), 3.0), 0.0, None)
    af += 0.8 * lipofuscin
    # A few autofluorescent red blood cells in the lamina propria.
    blob = (6.0 * np.exp(-(np.arange(-9, 10) ** 2)[:, None] / 18.0
                         - (np.arange(-9, 10) ** 2)[None, :] / 18.0)).astype(np.float32)
    for _ in range(max(1, h * w // 60000)):
        y, x = int(rng.integers(9, max(h - 9, 10))), int(rng.integers(9, max(w - 9, 10)))
        if y + 10 <= h and x + 10 <= w and regions[y, x] == LAMINA_PROPRIA:
            af[y - 9 : y + 10, x - 9 : x + 10] += blob
    spill: dict[int, list[tuple[int, float]]] = {}
    for src, dst, frac in SPILLOVER:
        spill.setdefault(STAINS.index(dst), []).append((STAINS.index(src), frac))
    shot = np.float32(rng.uniform(0.8, 1.6))
    read2 = np.float32(rng.uniform(3.0, 8.0) ** 2)
    # White noise: two large fields, cropped at random offsets per stain (fresh per pixel).
    pad = 64
    pool = rng.standard_normal((2, h + pad, w + pad), dtype=np.float32)
    out = np.empty(signal.shape, dtype=np.uint16)
    for j in range(n_stains):
        sources = spill.get(j, [])
        src = np.array([s for s, _ in sources], dtype=np.int64)
        frac = np.array([f * gain[j] for _, f in sources], dtype=np.float32)
        oy, ox = (int(v) for v in rng.integers(0, pad, 2))
        noise = pool[j % 2, oy : oy + h, ox : ox + w]
        if _camera_kernel is not None:
            _camera_kernel(signal, j, gain[j], src, frac, af, af_counts[j], background[j], shot,
                           read2, noise, out[j])
            continue
        mean = signal[j] * gain[j]  # pragma: no cover - numpy fallback
        for k in range(src.size):
            mean += signal[src[k]] * frac[k]
        mean += af * af_counts[j]
        mean += background[j]
        sd = np.sqrt(mean * shot + read2)
        sd *= noise
        mean += sd
        np.clip(mean, 0, 65535, out=mean)
        np.rint(mean, out=mean)
        out[j] = mean
    return out


try:  # optional: the camera model in one compiled pass per stain
    import numba
except ImportError:  # pragma: no cover - numpy fallback
    numba = None

_camera_kernel = None
if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _camera_kernel(  # pragma: no cover - compiled
        signal, j, gain, src, frac, af, af_counts, background, shot, read2, noise, out
    ):
        zero, top = np.float32(0.0), np.float32(65535.0)
        for r in range(signal.shape[1]):
            for i in range(signal.shape[2]):
                mean = signal[j, r, i] * gain
                for k in range(src.size):
                    mean += signal[src[k], r, i] * frac[k]
                mean += af[r, i] * af_counts
                mean += background
                mean += np.sqrt(mean * shot + read2) * noise[r, i]
                out[r, i] = np.uint16(np.rint(min(max(mean, zero), top)))
