"""Slides whose nuclei are clean prototypes of Table 1: features with well-separated positive
and negative intensities, and the label each nucleus must get."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.ids import nucleus_ids
from pipelines.stains import RULE_STAINS, stain_key

KEYS = [stain_key(s) for s in RULE_STAINS]

# positivity pattern -> (cell_type, excluded_at_step) under Table 1
PROTOTYPES: list[tuple[tuple[str, ...], str | None, int | None]] = [
    (("panck", "nakatpase"), "epithelial", None),
    (("panck", "muc2"), "goblet", None),
    (("nakatpase", "cga"), "endocrine", None),
    (("panck", "sox9", "olfm4"), "progenitor", None),
    (("sma", "vimentin"), "fibroblast", None),
    (("vimentin",), "stromal", None),
    (("vimentin", "cd45", "cd11b"), "monocyte", None),
    (("vimentin", "cd45", "cd68", "lysozyme"), "macrophage", None),
    (("vimentin", "cd45", "cd3d", "cd4"), "helper_t", None),
    (("vimentin", "cd45", "cd3d", "cd8"), "cytotoxic_t", None),
    (("vimentin", "cd45", "cd3d"), "t_cell_receptor", None),
    (("vimentin", "cd45", "cd20"), "b_cell", None),
    (("vimentin", "lysozyme"), "myeloid", None),
    (("vimentin", "cd45"), "leukocyte", None),
    (("panck", "vimentin"), None, 3),
    (("vimentin", "cd45", "cd3d", "cd4", "cd8"), None, 8),
    (("cd45",), None, 10),
    ((), None, 10),
]


def make_slide(slide_id: str, n: int, gain: float, seed: int) -> tuple[pl.DataFrame, list]:
    """Features with clean positive/negative intensities and the expected label per nucleus."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(PROTOTYPES), n)
    columns: dict[str, np.ndarray] = {}
    for key in [*KEYS, "dapi"]:
        positive = np.array([key in PROTOTYPES[p][0] for p in picks]) | (key == "dapi")
        columns[f"mean_{key}"] = np.where(
            positive, rng.lognormal(np.log(2000 * gain), 0.25, n), rng.lognormal(np.log(90 * gain),
                                                                                 0.25, n)
        ).astype(np.float32)
    labels = np.arange(1, n + 1, dtype=np.int32)
    frame = pl.DataFrame({
        "nucleus_id": nucleus_ids(slide_id, labels), "slide_id": [slide_id] * n, "label": labels,
        **columns,
    })
    expected = [(PROTOTYPES[p][1], PROTOTYPES[p][2]) for p in picks]
    return frame, expected
