"""Compiled passes of the renderer when numba is installed (None otherwise): stain amounts,
log light and the uint8 rounding.
"""

from __future__ import annotations

import numpy as np

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
