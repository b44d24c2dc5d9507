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
of synthetic slides match those tiles (docs/virtual-he.md).

Only the tissue indicator looks at neighbours (a Gaussian truncated at `halo_px`), so a slide
rendered tile by tile equals the slide rendered at once.

One module per part: the absorption tables and dye vectors (`absorptions`), the parameters
(`params`), the per-slide normalisation (`normalisation`), compiled passes (`kernels`), the
backend (`backend`) and the dye-vector measurement (`dye_vectors`).
"""

from pipelines.stains import IMMUNE_IDENTITY_STAINS
from pipelines.vhe.beer_lambert.absorptions import (
    ABSORPTION_TABLES,
    DEFAULT_ABSORPTIONS,
    EOSIN_OD,
    HEMATOXYLIN_OD,
    HISTOLOGY_ABSORPTIONS,
    MARKER_TINTED_ABSORPTIONS,
    StainAbsorption,
    Vector3,
    absorption_table,
)
from pipelines.vhe.beer_lambert.backend import BeerLambertBackend
from pipelines.vhe.beer_lambert.dye_vectors import estimate_dye_vectors
from pipelines.vhe.beer_lambert.normalisation import StainLevels, fit_normalisation
from pipelines.vhe.beer_lambert.params import BeerLambertParams

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
    "StainLevels",
    "Vector3",
    "absorption_table",
    "estimate_dye_vectors",
    "fit_normalisation",
]
