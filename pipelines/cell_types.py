"""The 14 nucleus classes of Table 1, their order (the class index) and coarse hierarchy."""

from __future__ import annotations

CELL_TYPES: tuple[str, ...] = (
    "goblet", "endocrine", "epithelial", "progenitor", "fibroblast", "stromal", "monocyte",
    "macrophage", "helper_t", "cytotoxic_t", "t_cell_receptor", "b_cell", "myeloid", "leukocyte",
)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CELL_TYPES)}

# cell_type -> (compartment, lineage); lineage is NULL outside the immune compartment.
HIERARCHY: dict[str, tuple[str, str | None]] = {
    "goblet": ("epithelial", None),
    "endocrine": ("epithelial", None),
    "epithelial": ("epithelial", None),
    "progenitor": ("epithelial", None),
    "fibroblast": ("connective", None),
    "stromal": ("connective", None),
    "monocyte": ("immune", "myeloid"),
    "macrophage": ("immune", "myeloid"),
    "myeloid": ("immune", "myeloid"),
    "helper_t": ("immune", "lymphoid"),
    "cytotoxic_t": ("immune", "lymphoid"),
    "t_cell_receptor": ("immune", "lymphoid"),
    "b_cell": ("immune", "lymphoid"),
    "leukocyte": ("immune", None),
}

# One colour per class for maps and QuPath export (RGB, 0-255).
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "goblet": (31, 119, 180), "endocrine": (255, 127, 14), "epithelial": (44, 160, 44),
    "progenitor": (214, 39, 40), "fibroblast": (148, 103, 189), "stromal": (140, 86, 75),
    "monocyte": (227, 119, 194), "macrophage": (127, 127, 127), "helper_t": (188, 189, 34),
    "cytotoxic_t": (23, 190, 207), "t_cell_receptor": (174, 199, 232), "b_cell": (255, 187, 120),
    "myeloid": (152, 223, 138), "leukocyte": (255, 152, 150),
}
