"""Beer-Lambert virtual H&E: fluorescence rendered as transmitted light through two dyes.

Physics. In bright-field microscopy a pixel's transmitted intensity in colour c is
`I_c = I0_c * exp(-OD_c)`, and the optical density adds up over the dyes in the section:
`OD_c = C_H * h_c + C_E * e_c`, with `h` and `e` the absorption spectra (unit optical-density
vectors over R, G, B) of hematoxylin and eosin and `C_H`, `C_E` their amounts at the pixel.

Mapping. Every MxIF stain stands for tissue that takes up one or both dyes: DNA stains (DAPI)
for chromatin, which binds hematoxylin; cytoplasmic and stromal stains (keratins, vimentin,
SMA, collagen, granule proteins) for the protein-rich, acidophilic material eosin binds. Each
stain s has a hematoxylin and an eosin weight (optical density at full stain intensity), and

    C_H = sum_s w_H[s] * n_s,   C_E = eosin_floor * t + sum_s w_E[s] * n_s

where `n_s` is the stain's intensity above stain-negative tissue, normalised per slide to
[0, 1] by robust percentiles (so a slide imaged twice as bright renders identically), and `t`
a tissue indicator: the autofluorescence of all stains above the glass level, averaged over
stains, smoothed by `tissue_sigma_um` and clipped to [0, 1]. So tissue without any
eosin-weighted stain is still faintly pink while lumen and glass stay white, as in a section.

The dye vectors were measured on the real colon H&E tiles in ../shared/data/real_he_colon_tiles
(`estimate_dye_vectors`): hematoxylin from the darkest 3% of pixels (nuclei) minus the pink
stroma, eosin from the pink stroma. The weights were tuned so the nuclear and stromal colours
of synthetic slides match those tiles (README, "Virtual H&E").

Only the tissue indicator looks at neighbours (a Gaussian truncated at `halo_px`), so a slide
rendered tile by tile equals the slide rendered at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from pipelines.errors import ConfigurationError, SlideInputError, StainError
from pipelines.gaussian import gaussian_blur
from pipelines.stains import NUCLEAR_STAIN, canonical_stain
from pipelines.vhe.base import VirtualHEBackend

Vector3 = tuple[float, float, float]


@dataclass(frozen=True)
class StainAbsorption:
    """How much hematoxylin and eosin optical density one stain contributes at full intensity."""

    stain: str
    hematoxylin: float = 0.0
    eosin: float = 0.0
    note: str = ""


# The earlier colon table, kept as the named option "marker_tinted": it gives rule stains
# (CgA, Lysozyme, CD68, immune membranes) eosin of their own, so a stain that defines a class
# in Table 1 also tints it, a colour cue real H&E does not have.
MARKER_TINTED_ABSORPTIONS: tuple[StainAbsorption, ...] = (
    StainAbsorption("DAPI", 1.05, 0.00, "DNA: chromatin takes up hematoxylin"),
    StainAbsorption("PCNA", 0.10, 0.00, "nuclear: proliferating nuclei, denser chromatin"),
    StainAbsorption("Sox9", 0.05, 0.00, "nuclear transcription factor"),
    StainAbsorption("FOXP3", 0.03, 0.00, "nuclear transcription factor"),
    StainAbsorption("pSTAT3", 0.03, 0.00, "nuclear / cytoplasmic signalling"),
    StainAbsorption("Muc2", 0.12, 0.00, "mucin: pale blue-grey, not eosinophilic"),
    StainAbsorption("PanCK", 0.00, 0.10, "epithelial cytoplasm (keratins)"),
    StainAbsorption("NaKATPase", 0.00, 0.05, "epithelial membrane"),
    StainAbsorption("BetaCatenin", 0.00, 0.05, "epithelial membrane / cytoplasm"),
    StainAbsorption("Vimentin", 0.00, 0.09, "mesenchymal cytoplasm"),
    StainAbsorption("SMA", 0.00, 0.17, "smooth muscle: strongly eosinophilic"),
    StainAbsorption("Actinin", 0.00, 0.10, "muscle cytoskeleton"),
    StainAbsorption("Collagen", 0.00, 0.14, "stromal collagen: pink extracellular matrix"),
    StainAbsorption("Lysozyme", 0.00, 0.30, "Paneth cell granules: bright eosinophilic"),
    StainAbsorption("CgA", 0.00, 0.30, "endocrine granules: eosinophilic"),
    StainAbsorption("CD68", 0.00, 0.15, "macrophage cytoplasm"),
    StainAbsorption("CD11B", 0.00, 0.03, "myeloid membrane"),
    StainAbsorption("CD45", 0.00, 0.03, "leukocyte membrane: scant cytoplasm"),
    StainAbsorption("CD3d", 0.00, 0.02, "T cell membrane"),
    StainAbsorption("CD4", 0.00, 0.02, "T cell membrane"),
    StainAbsorption("CD8", 0.00, 0.02, "T cell membrane"),
    StainAbsorption("CD20", 0.00, 0.02, "B cell membrane"),
    StainAbsorption("OLFM4", 0.00, 0.03, "stem cell granules / cytoplasm"),
    StainAbsorption("HLAA", 0.00, 0.03, "membrane"),
    StainAbsorption("ERBB2", 0.00, 0.03, "epithelial membrane"),
    StainAbsorption("pEGFR", 0.00, 0.03, "epithelial membrane / cytoplasm"),
    StainAbsorption("COX2", 0.00, 0.03, "cytoplasm"),
)


# The default table for the colon panel (pipelines/stains.py COLON_PANEL), "histology": dye
# comes from what H&E stains. Chromatin takes hematoxylin; protein-rich cytoplasm, stroma and
# muscle take eosin; mucin stays pale; eosinophilic granules only where histology shows them
# (Paneth cells' coarse granules; the endocrine cells' fine basal granules are faint). An
# immune stain's identity (CD3d, CD4, CD8, CD20, CD45, CD11B, CD68) adds no colour: those cells'
# cytoplasm is tinted by the stromal and mesenchymal stains they share with their neighbours.
# Optical densities are per unit of normalised stain intensity (0 = stain-negative tissue,
# 1 = the slide's 99.5th percentile).
HISTOLOGY_ABSORPTIONS: tuple[StainAbsorption, ...] = (
    StainAbsorption("DAPI", 1.05, 0.00, "DNA: chromatin takes up hematoxylin"),
    StainAbsorption("PCNA", 0.10, 0.00, "nuclear: proliferating nuclei, denser chromatin"),
    StainAbsorption("Sox9", 0.00, 0.00, "nuclear transcription factor: no dye of its own"),
    StainAbsorption("FOXP3", 0.00, 0.00, "nuclear transcription factor: no dye of its own"),
    StainAbsorption("pSTAT3", 0.00, 0.00, "signalling protein: no dye of its own"),
    StainAbsorption("Muc2", 0.12, 0.00, "mucin: pale blue-grey, not eosinophilic"),
    StainAbsorption("PanCK", 0.00, 0.10, "epithelial cytoplasm (keratins)"),
    StainAbsorption("NaKATPase", 0.00, 0.05, "epithelial membrane"),
    StainAbsorption("BetaCatenin", 0.00, 0.05, "epithelial membrane / cytoplasm"),
    StainAbsorption("Vimentin", 0.00, 0.09, "mesenchymal cytoplasm"),
    StainAbsorption("SMA", 0.00, 0.17, "smooth muscle: strongly eosinophilic"),
    StainAbsorption("Actinin", 0.00, 0.10, "muscle cytoskeleton"),
    StainAbsorption("Collagen", 0.00, 0.14, "stromal collagen: pink extracellular matrix"),
    StainAbsorption("Lysozyme", 0.00, 0.30, "Paneth cell granules: coarse, bright eosinophilic"),
    StainAbsorption("CgA", 0.00, 0.03, "endocrine granules: fine, basal, faint on H&E"),
    StainAbsorption("CD68", 0.00, 0.00, "immune identity: no colour of its own"),
    StainAbsorption("CD11B", 0.00, 0.00, "immune identity: no colour of its own"),
    StainAbsorption("CD45", 0.00, 0.00, "immune identity: no colour of its own"),
    StainAbsorption("CD3d", 0.00, 0.00, "immune identity: no colour of its own"),
    StainAbsorption("CD4", 0.00, 0.00, "immune identity: no colour of its own"),
    StainAbsorption("CD8", 0.00, 0.00, "immune identity: no colour of its own"),
    StainAbsorption("CD20", 0.00, 0.00, "immune identity: no colour of its own"),
    StainAbsorption("OLFM4", 0.00, 0.00, "stem cell glycoprotein: no dye of its own"),
    StainAbsorption("HLAA", 0.00, 0.00, "membrane antigen: no dye of its own"),
    StainAbsorption("ERBB2", 0.00, 0.00, "membrane receptor: no dye of its own"),
    StainAbsorption("pEGFR", 0.00, 0.00, "membrane receptor: no dye of its own"),
    StainAbsorption("COX2", 0.00, 0.00, "enzyme: no dye of its own"),
)
DEFAULT_ABSORPTIONS = HISTOLOGY_ABSORPTIONS

#: The named absorption tables; "histology" is the default.
ABSORPTION_TABLES: dict[str, tuple[StainAbsorption, ...]] = {
    "histology": HISTOLOGY_ABSORPTIONS,
    "marker_tinted": MARKER_TINTED_ABSORPTIONS,
}

#: Stains that name an immune cell's identity; the default table gives them no colour.
IMMUNE_IDENTITY_STAINS: tuple[str, ...] = ("CD3d", "CD4", "CD8", "CD20", "CD45", "CD11B", "CD68")


def absorption_table(name: str) -> tuple[StainAbsorption, ...]:
    """The absorption table called `name` ("histology" or "marker_tinted")."""
    if name not in ABSORPTION_TABLES:
        raise ConfigurationError(
            f"Unknown Beer-Lambert absorption table {name!r}; choose one of "
            f"{sorted(ABSORPTION_TABLES)}."
        )
    return ABSORPTION_TABLES[name]


# Unit optical-density vectors (R, G, B). Eosin as measured on the real colon H&E tiles
# (estimate_dye_vectors). Hematoxylin measured (0.62, 0.62, 0.49), moved toward blue so that
# rendered nuclei, which carry less eosin than real ones, reach the real nuclear colour.
HEMATOXYLIN_OD: Vector3 = (0.64, 0.66, 0.40)
EOSIN_OD: Vector3 = (0.34, 0.79, 0.52)


@dataclass(frozen=True)
class BeerLambertParams:
    """Dye spectra, per-stain absorptions and the per-slide normalisation of the renderer.

    `missing="error"` refuses a slide lacking any stain of the table; `"ignore"` renders with
    the stains the slide has (the nuclear stain is always required).
    """

    absorptions: tuple[StainAbsorption, ...] = DEFAULT_ABSORPTIONS
    hematoxylin_od: Vector3 = HEMATOXYLIN_OD
    eosin_od: Vector3 = EOSIN_OD
    eosin_floor: float = 0.10
    tissue_sigma_um: float = 1.0
    illumination: Vector3 = (250.0, 248.0, 250.0)
    glass_percentile: float = 1.0
    background_percentile: float = 50.0
    high_percentile: float = 99.5
    min_contrast_sigma: float = 8.0
    missing: Literal["error", "ignore"] = "error"
    nuclear_stain: str = NUCLEAR_STAIN

    def __post_init__(self) -> None:
        stains = [canonical_stain(a.stain) for a in self.absorptions]
        if len(set(stains)) != len(stains):
            raise ConfigurationError(f"Beer-Lambert absorptions list a stain twice: {stains}.")
        if any(a.hematoxylin < 0 or a.eosin < 0 for a in self.absorptions):
            raise ConfigurationError("Beer-Lambert optical densities must be >= 0.")
        if self.nuclear_stain not in stains:
            raise ConfigurationError(
                f"The absorption table must give the nuclear stain {self.nuclear_stain!r} a "
                "hematoxylin weight; without it no nucleus would be blue."
            )
        levels = (self.glass_percentile, self.background_percentile, self.high_percentile)
        if not 0 <= levels[0] <= levels[1] < levels[2] <= 100:
            raise ConfigurationError(
                "Percentiles must satisfy 0 <= glass <= background < high <= 100, got "
                f"{levels}."
            )
        if self.tissue_sigma_um < 0:
            raise ConfigurationError("tissue_sigma_um must be >= 0.")
        if self.missing not in ("error", "ignore"):
            raise ConfigurationError(f"missing must be 'error' or 'ignore', not {self.missing!r}.")

    @property
    def stains(self) -> tuple[str, ...]:
        return tuple(canonical_stain(a.stain) for a in self.absorptions)

    def restricted_to(self, available: Sequence[str]) -> BeerLambertParams:
        """The same table without the stains `available` lacks."""
        have = set(available)
        kept = tuple(a for a in self.absorptions if canonical_stain(a.stain) in have)
        return replace(self, absorptions=kept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(v: Vector3) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(a)
    if norm == 0:
        raise ConfigurationError("A dye optical-density vector must not be zero.")
    return a / norm


@dataclass(frozen=True)
class StainNormalisation:
    """Per-slide, per-stain intensity levels fitted on a pixel sample.

    `glass`: the dark level outside tissue; `background`: the level of stain-negative tissue
    (autofluorescence); `high`: the level of a strongly positive pixel. A stain's signal is
    n = clip((x - background) / (high - background), 0, 1) and its tissue evidence
    a = (x - glass) / (background - glass).
    """

    glass: np.ndarray
    background: np.ndarray
    high: np.ndarray

    def to_dict(self, stains: Sequence[str]) -> dict[str, list[float]]:
        return {
            s: [float(g), float(b), float(h)]
            for s, g, b, h in zip(stains, self.glass, self.background, self.high, strict=True)
        }


def _value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct values as float32, their counts) when `values` are integers of a modest range
    (as uint8/uint16 slides give), else None."""
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)) or high - low > 1 << 20:
        return None
    shifted = values - np.float32(low)
    as_int = shifted.astype(np.int64)
    if not np.array_equal(as_int, shifted):
        return None
    count = np.bincount(as_int)
    present = np.flatnonzero(count)
    return (present + low).astype(np.float32), count[present]


def _ranked_percentiles(
    sorted_values: np.ndarray, cumulative: np.ndarray, qs: Sequence[float]
) -> np.ndarray:
    """np.percentile's default (linear) percentiles of the multiset where sorted_values[k]
    occurs until rank cumulative[k] - 1."""
    n = int(cumulative[-1])
    out = np.empty(len(qs), np.float64)
    for j, q in enumerate(qs):
        rank = (n - 1) * float(q) / 100.0
        lo = int(np.floor(rank))
        hi = min(lo + 1, n - 1)
        a, b = np.searchsorted(cumulative, [lo, hi], side="right")
        va, vb = float(sorted_values[a]), float(sorted_values[b])
        out[j] = va + (vb - va) * (rank - lo)
    return out


def fit_normalisation(
    sample: np.ndarray, params: BeerLambertParams, stains: Sequence[str], slide_id: str = "slide"
) -> StainNormalisation:
    """Robust per-stain levels from a (stain, n) pixel sample of one slide.

    Percentiles make the rendering independent of the slide's intensity scale: multiplying a
    slide by a constant multiplies every level by it and leaves the colours unchanged. `high`
    is at least `min_contrast_sigma` robust noise sigmas above the background, so a stain with
    few positive pixels does not stretch its noise to full colour.
    """
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim != 2 or sample.shape[0] != len(stains) or sample.shape[1] == 0:
        raise SlideInputError(
            f"Slide {slide_id!r}: the calibration sample must be (stain, n) with {len(stains)} "
            f"stains and n > 0, got {sample.shape}."
        )
    levels = np.empty((3, len(stains)), np.float64)
    mad = np.empty(len(stains), np.float64)
    qs = [params.glass_percentile, params.background_percentile, params.high_percentile]
    for i, values in enumerate(sample):  # one stain at a time keeps the copies small
        counted = _value_counts(values)
        if counted is None:
            levels[:, i] = np.percentile(values, qs)
            mad[i] = np.median(np.abs(values - np.float32(levels[1, i]))) * 1.4826
        else:  # integer intensities (every slide format here): exact, from a histogram
            value, count = counted
            levels[:, i] = _ranked_percentiles(value, np.cumsum(count), qs)
            distance = np.abs(value - np.float32(levels[1, i]))
            order = np.argsort(distance, kind="stable")
            mad[i] = _ranked_percentiles(distance[order], np.cumsum(count[order]), [50.0])[0]
            mad[i] *= 1.4826
    glass, background, high = levels
    high = np.maximum(high, background + params.min_contrast_sigma * mad)
    nuclear = list(stains).index(params.nuclear_stain)
    if high[nuclear] <= background[nuclear]:
        raise SlideInputError(
            f"Slide {slide_id!r}: stain {params.nuclear_stain!r} is constant, so no nucleus "
            "can be rendered; check the slide's stain order and pixel data."
        )
    high = np.where(high > background, high, background + 1.0)
    return StainNormalisation(
        glass=glass.astype(np.float32),
        background=background.astype(np.float32),
        high=high.astype(np.float32),
    )


try:  # optional: one compiled pass over the window's stains instead of ~6 numpy passes
    import numba
except ImportError:  # pragma: no cover - numpy fallback
    numba = None

_amounts_kernel = _log_light_kernel = _to_uint8_kernel = None
if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _log_light_kernel(  # pragma: no cover - compiled
        hema, eosin, tissue, floor, dye_od, log_i0, out
    ):
        """out[y, x, c] = log I0_c - OD_c, the eosin floor added where the tissue is."""
        zero, one = np.float32(0.0), np.float32(1.0)
        for r in range(hema.shape[0]):
            for i in range(hema.shape[1]):
                h = hema[r, i]
                e = eosin[r, i] + floor * min(max(tissue[r, i], zero), one)
                for c in range(3):
                    out[r, i, c] = log_i0[c] - (dye_od[c, 0] * h + dye_od[c, 1] * e)

    @numba.njit(cache=True, nogil=True)
    def _to_uint8_kernel(light, out):  # pragma: no cover - compiled
        zero, top, half = np.float32(0.0), np.float32(255.0), np.float32(0.5)
        for i in range(light.size):
            out[i] = np.uint8(min(max(light[i] + half, zero), top))

    @numba.njit(cache=True, nogil=True)
    def _amounts_kernel(  # pragma: no cover - compiled
        window, planes, glass, tissue_scale, background, signal_scale, w_h, w_e, hema, eosin,
        tissue,
    ):
        """Row by row, stain by stain: the per-row sums stay in L1 and every stain value is
        read once; float32 throughout."""
        zero, one = np.float32(0.0), np.float32(1.0)
        for r in range(window.shape[1]):
            h_row, e_row, t_row = hema[r], eosin[r], tissue[r]
            h_row[:] = zero
            e_row[:] = zero
            t_row[:] = zero
            for j in range(planes.size):
                row = window[planes[j], r]
                g, ts, bg, sc = glass[j], tissue_scale[j], background[j], signal_scale[j]
                wh, we = w_h[j], w_e[j]
                for i in range(row.size):
                    v = np.float32(row[i])
                    t_row[i] += ts * (v - g)
                    n = min(max((v - bg) * sc, zero), one)
                    h_row[i] += wh * n
                    e_row[i] += we * n


class BeerLambertBackend(VirtualHEBackend):
    """Physically based virtual H&E; `calibrate` fits the per-slide stain normalisation."""

    name = "beer_lambert"
    halo_px = 16
    STRIP_PIXELS = 1 << 15

    def __init__(
        self,
        params: BeerLambertParams | None = None,
        normalisation: StainNormalisation | None = None,
    ) -> None:
        self.p = params or BeerLambertParams()
        self.normalisation = normalisation
        self._stains = self.p.stains
        weights = np.array([[a.hematoxylin, a.eosin] for a in self.p.absorptions], np.float32)
        self._dye_weights = weights.T.copy()  # (2, stain)
        self._dye_od = np.stack([_unit(self.p.hematoxylin_od), _unit(self.p.eosin_od)], axis=1)
        self._log_i0 = np.log(np.asarray(self.p.illumination, dtype=np.float64))

    @property
    def stains(self) -> tuple[str, ...]:
        return self._stains

    def for_stains(self, available: Sequence[str], *, source: str) -> BeerLambertBackend:
        """Checks the slide's stains; with missing="ignore" drops the ones it lacks instead."""
        have = set(available)
        if self.p.missing == "ignore" and self.p.nuclear_stain in have:
            return BeerLambertBackend(self.p.restricted_to(available), self.normalisation)
        self.check_stains(available, source=source)
        return self

    def check_stains(self, available: Iterable[str], *, source: str) -> None:
        have = set(available)
        missing = [s for s in self._stains if s not in have]
        if missing:
            raise StainError(
                f"{source}: the Beer-Lambert virtual H&E needs stain(s) {', '.join(missing)}, "
                f"which the slide lacks (it has {sorted(have)}). Add an alias in "
                "pipelines/stains.py if the stain is there under another name, or set "
                "missing_stains: ignore in the virtual_he config to leave it out."
            )

    def calibrate(self, sample: np.ndarray, slide_id: str) -> BeerLambertBackend:
        return BeerLambertBackend(self.p, fit_normalisation(sample, self.p, self._stains, slide_id))

    def _plan(self, window: np.ndarray, stains: Sequence[str]) -> dict[str, np.ndarray]:
        """Per table stain: its plane in the window and its levels, in float32."""
        if self.normalisation is None:
            raise ConfigurationError(
                "The Beer-Lambert backend is not calibrated: call calibrate(sample, slide_id) "
                "with a pixel sample of the slide first (render_slide does this)."
            )
        self.select(window[:, :0, :0], stains)  # checks shape and stains without copying
        norm = self.normalisation
        n = len(self._stains)
        return {
            "planes": np.array([list(stains).index(st) for st in self._stains], np.int64),
            "glass": norm.glass.astype(np.float32),
            "background": norm.background.astype(np.float32),
            "signal_scale": (1.0 / (norm.high - norm.background)).astype(np.float32),
            "tissue_scale": (1.0 / np.maximum(norm.background - norm.glass, 1e-6) / n).astype(
                np.float32
            ),
            "hematoxylin": self._dye_weights[0].astype(np.float32),
            "eosin": self._dye_weights[1].astype(np.float32),
        }

    def _amounts(
        self, window: np.ndarray, plan: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hematoxylin, eosin, raw tissue indicator), each (h, w) float32."""
        _, h, w = window.shape
        if _amounts_kernel is not None:
            hema, eosin, tissue = (np.empty((h, w), np.float32) for _ in range(3))
            _amounts_kernel(
                window, plan["planes"], plan["glass"], plan["tissue_scale"], plan["background"],
                plan["signal_scale"], plan["hematoxylin"], plan["eosin"], hema, eosin, tissue,
            )
            return hema, eosin, tissue
        # numpy: strips of rows keep the float temporaries in cache
        planes = plan["planes"]
        dyes = np.empty((2, h * w), np.float32)
        tissue = np.empty(h * w, np.float32)
        weights = np.stack([plan["hematoxylin"], plan["eosin"]])
        rows = max(1, self.STRIP_PIXELS // max(w, 1))
        for r0 in range(0, h, rows):
            a, b = r0 * w, min(h, r0 + rows) * w
            strip = window[planes, r0 : r0 + rows].reshape(len(planes), -1).astype(np.float32)
            tissue[a:b] = plan["tissue_scale"] @ (strip - plan["glass"][:, None])
            strip -= plan["background"][:, None]
            strip *= plan["signal_scale"][:, None]
            np.clip(strip, 0.0, 1.0, out=strip)
            dyes[:, a:b] = weights @ strip
        return dyes[0].reshape(h, w), dyes[1].reshape(h, w), tissue.reshape(h, w)

    def _fields(
        self, window: np.ndarray, stains: Sequence[str], mpp: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hematoxylin, eosin (without the tissue floor) and the smoothed tissue indicator."""
        hema, eosin, tissue = self._amounts(window, self._plan(window, stains))
        sigma_px = self.p.tissue_sigma_um / mpp
        if sigma_px > 0:
            tissue = gaussian_blur(tissue, sigma_px, truncate=min(4.0, self.halo_px / sigma_px))
        return hema, eosin, tissue

    def optical_density(
        self, window: np.ndarray, stains: Sequence[str], mpp: float
    ) -> np.ndarray:
        """(h, w, 3) float32 optical density of the virtual section over `window`."""
        hema, eosin, tissue = self._fields(window, stains, mpp)
        np.clip(tissue, 0.0, 1.0, out=tissue)
        eosin += np.float32(self.p.eosin_floor) * tissue
        od = np.empty((*hema.shape, 3), np.float32)
        for c in range(3):
            np.multiply(hema, np.float32(self._dye_od[c, 0]), out=od[..., c])
            od[..., c] += np.float32(self._dye_od[c, 1]) * eosin
        return od

    def render(self, window: np.ndarray, stains: Sequence[str], mpp: float) -> np.ndarray:
        """(h, w, 3) uint8: I0 * exp(-OD) per colour, rounded."""
        log_i0 = self._log_i0.astype(np.float32)
        if _log_light_kernel is None:
            od = self.optical_density(window, stains, mpp)
            np.subtract(log_i0, od, out=od)
        else:
            hema, eosin, tissue = self._fields(window, stains, mpp)
            od = np.empty((*hema.shape, 3), np.float32)
            _log_light_kernel(hema, eosin, tissue, np.float32(self.p.eosin_floor),
                              self._dye_od.astype(np.float32), log_i0, od)
        np.exp(od, out=od)
        if _to_uint8_kernel is None:
            od += np.float32(0.5)
            np.clip(od, 0.0, 255.0, out=od)
            return od.astype(np.uint8)
        rgb = np.empty(od.shape, np.uint8)
        _to_uint8_kernel(od.reshape(-1), rgb.reshape(-1))
        return rgb

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"beer_lambert": self.p.to_dict()}
        if self.normalisation is not None:
            out["normalisation"] = self.normalisation.to_dict(self._stains)
        return out


def estimate_dye_vectors(rgb: np.ndarray, dark_fraction: float = 0.03) -> tuple[Vector3, Vector3]:
    """Hematoxylin and eosin unit OD vectors measured on real H&E pixels (n, 3) uint8.

    Eosin: mean OD of light pink tissue (R > B, total OD 0.3-1.2). Hematoxylin: mean OD of the
    darkest `dark_fraction` of pixels (nuclei) minus that eosin, as nuclei also hold eosin.
    """
    rgb = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    od = -np.log((rgb + 1.0) / 256.0)
    total = od.sum(axis=1)
    pink = od[(rgb[:, 0] - rgb[:, 2] > 8) & (total > 0.3) & (total < 1.2)]
    dark = od[total >= np.quantile(total, 1.0 - dark_fraction)]
    if len(pink) == 0 or len(dark) == 0:
        raise SlideInputError("The H&E pixels hold no pink stroma or no dark nuclei to measure.")
    eosin = pink.mean(axis=0)
    hema = dark.mean(axis=0) - eosin
    e, h = eosin / np.linalg.norm(eosin), hema / np.linalg.norm(hema)
    return (
        tuple(float(round(v, 3)) for v in h),  # type: ignore[return-value]
        tuple(float(round(v, 3)) for v in e),  # type: ignore[return-value]
    )


__all__ = [
    "ABSORPTION_TABLES",
    "DEFAULT_ABSORPTIONS",
    "EOSIN_OD",
    "HEMATOXYLIN_OD",
    "HISTOLOGY_ABSORPTIONS",
    "IMMUNE_IDENTITY_STAINS",
    "MARKER_TINTED_ABSORPTIONS",
    "BeerLambertBackend",
    "BeerLambertParams",
    "StainAbsorption",
    "StainNormalisation",
    "absorption_table",
    "estimate_dye_vectors",
]
