"""Per-stain localisation and per-class stain profiles of the simulated colon panel.

A profile lists the stains a class is always positive for, and optional stains with the
probability a cell of that class carries them. Every profile, drawn however its options fall,
reads back as its own class under Table 1 (see `_table1.py`); the `unlabelled_*` profiles are
deliberate conflicts that Table 1 excludes.

Table 1 excludes nuclei that are neither Epi+ nor Stroma+ (step 10), so immune profiles carry
Vimentin (leukocytes express it) and never SMA (step 13).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from pipelines.stains import COLON_PANEL

MEMBRANE, CYTOPLASM, NUCLEUS = "membrane", "cytoplasm", "nucleus"

# Where each stain sits in a cell.
LOCALISATION: MappingProxyType[str, str] = MappingProxyType({
    "NaKATPase": MEMBRANE, "PanCK": CYTOPLASM, "Muc2": CYTOPLASM, "CgA": CYTOPLASM,
    "Vimentin": CYTOPLASM, "SMA": CYTOPLASM, "Sox9": NUCLEUS, "OLFM4": NUCLEUS,
    "Lysozyme": CYTOPLASM, "CD45": MEMBRANE, "CD20": MEMBRANE, "CD68": CYTOPLASM,
    "CD11B": MEMBRANE, "CD3d": MEMBRANE, "CD8": MEMBRANE, "CD4": MEMBRANE, "DAPI": NUCLEUS,
    "BetaCatenin": MEMBRANE, "Collagen": CYTOPLASM, "COX2": CYTOPLASM, "ERBB2": MEMBRANE,
    "FOXP3": NUCLEUS, "HLAA": MEMBRANE, "PCNA": NUCLEUS, "pEGFR": MEMBRANE, "pSTAT3": NUCLEUS,
    "Actinin": CYTOPLASM,
})

# Typical positive brightness (counts before per-slide gain) and background per stain.
BRIGHTNESS: MappingProxyType[str, float] = MappingProxyType({
    "NaKATPase": 2600.0, "PanCK": 3200.0, "Muc2": 3600.0, "CgA": 3000.0, "Vimentin": 2400.0,
    "SMA": 3000.0, "Sox9": 2800.0, "OLFM4": 2400.0, "Lysozyme": 2800.0, "CD45": 2400.0,
    "CD20": 2600.0, "CD68": 2600.0, "CD11B": 2200.0, "CD3d": 2400.0, "CD8": 2400.0,
    "CD4": 2200.0, "DAPI": 5000.0, "BetaCatenin": 2000.0, "Collagen": 1800.0, "COX2": 1800.0,
    "ERBB2": 1600.0, "FOXP3": 2000.0, "HLAA": 1400.0, "PCNA": 2400.0, "pEGFR": 1600.0,
    "pSTAT3": 1800.0, "Actinin": 2000.0,
})

# (source, target, fraction): a share of the source stain's signal seen in the target's image.
SPILLOVER: tuple[tuple[str, str, float], ...] = (
    ("DAPI", "Sox9", 0.015), ("DAPI", "PCNA", 0.015), ("PanCK", "NaKATPase", 0.04),
    ("CD3d", "CD4", 0.03), ("CD4", "CD8", 0.03), ("Vimentin", "SMA", 0.03),
    ("CD68", "CD11B", 0.03), ("Muc2", "CgA", 0.025), ("CD45", "CD20", 0.03),
    ("Lysozyme", "CD68", 0.03), ("Collagen", "Vimentin", 0.03), ("SMA", "Actinin", 0.04),
)


@dataclass(frozen=True)
class Morphology:
    """Nuclear shape (µm), chromatin and cell body of one class.

    `length_um`/`width_um`: mean major/minor nuclear axes. `dapi`: relative DAPI brightness.
    `texture`: chromatin contrast (0 smooth, 1 coarse). `rim`: brighter nuclear border.
    `cytoplasm_um`: cell body margin around a stromal/immune nucleus.
    """

    length_um: float
    width_um: float
    dapi: float
    texture: float
    rim: float
    cytoplasm_um: float
    irregular: float = 0.08


@dataclass(frozen=True)
class Profile:
    """A cell's design: class it must read as, stains always on, optional stains, morphology."""

    cell_type: str | None
    always: tuple[str, ...]
    morphology: Morphology
    optional: tuple[tuple[str, float], ...] = field(default_factory=tuple)


_EPI_MEMBRANE = ("NaKATPase", "PanCK", "BetaCatenin", "HLAA")
_LEUKOCYTE = ("CD45", "Vimentin", "HLAA")

_LYMPHOCYTE = Morphology(6.5, 5.8, 1.45, 0.35, 0.05, 0.9, 0.05)
_EPI = Morphology(10.0, 5.2, 0.85, 0.55, 0.25, 0.0, 0.07)

_M = Morphology
PROFILES: MappingProxyType[str, Profile] = MappingProxyType({
    "goblet": Profile("goblet", (*_EPI_MEMBRANE, "Muc2"), _M(7.0, 3.4, 1.25, 0.3, 0.1, 0.0),
                      (("COX2", 0.1),)),
    "endocrine": Profile("endocrine", (*_EPI_MEMBRANE, "CgA"),
                         _M(7.5, 6.0, 0.95, 0.5, 0.2, 0.0), (("pEGFR", 0.2),)),
    "epithelial": Profile("epithelial", _EPI_MEMBRANE, _EPI,
                          (("pEGFR", 0.3), ("ERBB2", 0.25), ("COX2", 0.15), ("PCNA", 0.15),
                           ("pSTAT3", 0.1))),
    "progenitor": Profile("progenitor", (*_EPI_MEMBRANE, "Sox9", "PCNA"),
                          _M(9.0, 5.0, 1.0, 0.45, 0.2, 0.0), (("OLFM4", 0.7), ("ERBB2", 0.2))),
    # Paneth cells (ileal crypt base): epithelial and Lysozyme+, so Table 1 excludes them.
    "paneth": Profile(None, (*_EPI_MEMBRANE, "Lysozyme"), _M(7.0, 6.0, 1.05, 0.4, 0.15, 0.0)),
    "fibroblast": Profile("fibroblast", ("Vimentin", "SMA", "HLAA"),
                          _M(13.0, 3.2, 1.1, 0.35, 0.1, 1.6, 0.1),
                          (("Collagen", 0.6), ("Actinin", 0.2))),
    "smooth_muscle": Profile("fibroblast", ("SMA", "Actinin"),
                             _M(16.0, 3.0, 0.95, 0.3, 0.1, 2.4, 0.05), (("HLAA", 0.5),)),
    "stromal": Profile("stromal", ("Vimentin", "HLAA"), _M(10.0, 4.2, 0.95, 0.4, 0.1, 1.8, 0.1),
                       (("Collagen", 0.5), ("pSTAT3", 0.1))),
    "monocyte": Profile("monocyte", (*_LEUKOCYTE, "CD11B"),
                        _M(8.0, 6.5, 1.05, 0.3, 0.1, 2.0, 0.18), (("COX2", 0.2),)),
    "macrophage": Profile("macrophage", (*_LEUKOCYTE, "CD68"),
                          _M(9.0, 7.0, 0.9, 0.35, 0.1, 3.2, 0.14),
                          (("Lysozyme", 0.35), ("COX2", 0.2), ("pSTAT3", 0.2))),
    "helper_t": Profile("helper_t", (*_LEUKOCYTE, "CD3d", "CD4"), _LYMPHOCYTE,
                        (("FOXP3", 0.15), ("pSTAT3", 0.15))),
    "cytotoxic_t": Profile("cytotoxic_t", (*_LEUKOCYTE, "CD3d", "CD8"), _LYMPHOCYTE),
    "t_cell_receptor": Profile("t_cell_receptor", (*_LEUKOCYTE, "CD3d"), _LYMPHOCYTE),
    "b_cell": Profile("b_cell", (*_LEUKOCYTE, "CD20"), _M(7.0, 6.2, 1.4, 0.45, 0.1, 0.9, 0.05),
                      (("PCNA", 0.1),)),
    "myeloid": Profile("myeloid", ("Lysozyme", "Vimentin", "HLAA"),
                       _M(8.5, 5.0, 1.2, 0.6, 0.15, 2.2, 0.3), (("CD45", 0.7),)),
    # Control group: helper T, T-cell receptor and leukocyte share one lymphocyte nucleus, no
    # stain that takes dye (see HE_CUES) and the same lamina-propria seats.
    "leukocyte": Profile("leukocyte", _LEUKOCYTE, _LYMPHOCYTE),
    # Deliberate conflicts: real tissue has them, Table 1 excludes them (cell_type None).
    "unlabelled_double_t": Profile(None, (*_LEUKOCYTE, "CD3d", "CD4", "CD8"), _LYMPHOCYTE),
    "unlabelled_macrophage_t": Profile(None, (*_LEUKOCYTE, "CD68", "CD3d"),
                                       _M(8.5, 7.0, 1.0, 0.35, 0.1, 2.6, 0.14)),
    "unlabelled_epi_stroma": Profile(None, ("PanCK", "Vimentin", "HLAA"),
                                     _M(9.5, 5.0, 0.9, 0.45, 0.15, 1.8, 0.12)),
    "unlabelled_unstained": Profile(None, (), _M(8.0, 5.5, 1.0, 0.5, 0.1, 1.0, 0.15),
                                    (("HLAA", 0.5),)),
})

STAINS: tuple[str, ...] = COLON_PANEL


Signal = Literal["strong", "weak", "none"]


@dataclass(frozen=True)
class HECue:
    """What real H&E shows of a class (histology, not markers), and so what the simulator may
    render: `signal` is how well the class can be told apart from the cells it sits among."""

    signal: Signal
    nucleus: str
    chromatin: str
    cytoplasm: str
    granules: str
    mucin: str
    position: str


# The H&E cue table (docs/synthetic-cohort.md): one row per class, written from colon
# histology. Morphology above and the histology dye table in pipelines/vhe/beer_lambert/
# render these cues and nothing else; `none` classes differ from each other in no rendered cue.
HE_CUES: MappingProxyType[str, HECue] = MappingProxyType({
    "goblet": HECue("strong", "small, flattened, pressed to the base", "dense", "scant rim",
                    "none", "large pale apical vacuole", "surface and upper crypt"),
    "endocrine": HECue("weak", "round, central", "fine", "moderate, faintly pink",
                       "fine basal granules, faint", "none", "scattered in crypts"),
    "epithelial": HECue("strong", "elongated, basal, palisaded", "fine, vesicular",
                        "columnar, pink", "none", "none", "surface and crypt lining"),
    "progenitor": HECue("weak", "elongated, crowded", "slightly denser (proliferating)",
                        "columnar, pink", "none", "none", "lower third of crypts"),
    "fibroblast": HECue("strong", "long, thin spindle", "dense", "strongly pink fibres",
                        "none", "none", "muscularis mucosae, around crypts"),
    "stromal": HECue("strong", "oval to spindle", "fine", "pale pink, wispy",
                     "none", "none", "lamina propria, in collagen"),
    "monocyte": HECue("weak", "bean-shaped, slightly irregular", "fine", "moderate, pale",
                      "none", "none", "lamina propria"),
    "macrophage": HECue("weak", "oval, eccentric", "fine", "abundant, pale pink",
                        "some (lysozyme)", "none", "lamina propria, muscularis"),
    "helper_t": HECue("none", "small, round", "dense", "scant", "none", "none",
                      "lamina propria"),
    "cytotoxic_t": HECue("weak", "small, round", "dense", "scant", "none", "none",
                         "lamina propria; intraepithelial"),
    "t_cell_receptor": HECue("none", "small, round", "dense", "scant", "none", "none",
                             "lamina propria"),
    "b_cell": HECue("weak", "small, round, slightly larger", "dense, clumped", "scant",
                    "none", "none", "lamina propria"),
    "myeloid": HECue("weak", "lobulated, irregular", "coarse", "moderate",
                     "granular (lysozyme)", "none", "lamina propria"),
    "leukocyte": HECue("none", "small, round", "dense", "scant", "none", "none",
                       "lamina propria"),
})

#: Classes H&E cannot tell apart from each other: rendered identically (the leak control).
CONTROL_GROUP: tuple[str, ...] = tuple(k for k, c in HE_CUES.items() if c.signal == "none")


def he_cue_table() -> str:
    """HE_CUES as the Markdown table of docs/synthetic-cohort.md."""
    cols = ("signal", "nucleus", "chromatin", "cytoplasm", "granules", "mucin", "position")
    lines = ["| cell_type | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, cue in HE_CUES.items():
        lines.append(f"| {name} | " + " | ".join(str(getattr(cue, c)) for c in cols) + " |")
    return "\n".join(lines)
