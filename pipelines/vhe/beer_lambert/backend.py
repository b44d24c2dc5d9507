"""The Beer-Lambert virtual-H&E backend: a slide calibrated, then rendered window by window as
I0 * exp(-OD), the optical density summed over the two dyes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pipelines.errors import ConfigurationError, StainError
from pipelines.gaussian import gaussian_blur
from pipelines.vhe.base import VirtualHEBackend
from pipelines.vhe.beer_lambert.kernels import _amounts_kernel, _log_light_kernel, _to_uint8_kernel
from pipelines.vhe.beer_lambert.normalisation import StainLevels, fit_normalisation
from pipelines.vhe.beer_lambert.params import BeerLambertParams, _unit


class BeerLambertBackend(VirtualHEBackend):
    """Physically based virtual H&E; `calibrate` fits the per-slide stain normalisation."""

    name = "beer_lambert"
    halo_px = 16
    STRIP_PIXELS = 1 << 15

    def __init__(
        self,
        params: BeerLambertParams | None = None,
        normalisation: StainLevels | None = None,
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
