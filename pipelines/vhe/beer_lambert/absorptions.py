"""How much hematoxylin and eosin each stain contributes ("histology", the default, and
"marker_tinted"), and the two dyes' unit optical-density vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import ConfigurationError

Vector3 = tuple[float, float, float]


@dataclass(frozen=True)
class StainAbsorption:
    """How much hematoxylin and eosin optical density one stain contributes at full intensity."""

    stain: str
    hematoxylin: float = 0.0
    eosin: float = 0.0
    note: str = ""


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

# The earlier colon table, kept as the named option "marker_tinted": the histology table with
# the rule stains (CgA, Lysozyme, CD68, immune membranes) given eosin of their own, so a stain
# that defines a class in Table 1 also tints it, a colour cue real H&E does not have.
_MARKER_TINTS: dict[str, StainAbsorption] = {a.stain: a for a in (
    StainAbsorption("Sox9", 0.05, 0.00, "nuclear transcription factor"),
    StainAbsorption("FOXP3", 0.03, 0.00, "nuclear transcription factor"),
    StainAbsorption("pSTAT3", 0.03, 0.00, "nuclear / cytoplasmic signalling"),
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
)}
MARKER_TINTED_ABSORPTIONS: tuple[StainAbsorption, ...] = tuple(
    _MARKER_TINTS.get(a.stain, a) for a in HISTOLOGY_ABSORPTIONS
)

#: The named absorption tables; "histology" is the default.
ABSORPTION_TABLES: dict[str, tuple[StainAbsorption, ...]] = {
    "histology": HISTOLOGY_ABSORPTIONS,
    "marker_tinted": MARKER_TINTED_ABSORPTIONS,
}



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
