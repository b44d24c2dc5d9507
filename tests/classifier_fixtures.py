"""Small patch stores and manifests for the classifier tests.

Each class's patch is a disc in the class colour (CLASS_COLOURS) with a class-dependent radius
on a pale pink background plus noise, so a small network learns it in a few dozen steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.cell_types import CELL_TYPES, CLASS_COLOURS
from storage.patch_store import PatchStore, create_slide_patches, ensure_store, patch_order

PATCH_PX = 41
BACKGROUND = np.array([236, 204, 222], dtype=np.float32)


def class_patches(class_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 41, 41, 3) uint8 patches; unlabelled rows (-1) get a grey disc."""
    n = len(class_index)
    yy, xx = np.mgrid[:PATCH_PX, :PATCH_PX]
    r2 = (yy - PATCH_PX // 2) ** 2 + (xx - PATCH_PX // 2) ** 2
    out = np.empty((n, PATCH_PX, PATCH_PX, 3), dtype=np.uint8)
    for i, c in enumerate(class_index):
        colour = (np.array(CLASS_COLOURS[CELL_TYPES[c]], np.float32) if c >= 0
                  else np.full(3, 128, np.float32))
        radius = 5 + (int(c) % 4) * 3 + rng.integers(-1, 2)
        disc = (r2 < radius * radius)[..., None]
        img = np.where(disc, colour, BACKGROUND) + rng.normal(0, 10, (PATCH_PX, PATCH_PX, 3))
        out[i] = np.clip(img, 0, 255)
    return out


def write_slide(
    store: Path, slide_id: str, counts: Mapping[int, int], seed: int = 0,
    block_rows: int = 512,
) -> np.ndarray:
    """Write one slide with `counts[class_index]` patches per class; returns its images in
    store order."""
    rng = np.random.default_rng([seed, sum(map(ord, slide_id))])
    class_index = np.concatenate(
        [np.full(n, c, dtype=np.int16) for c, n in sorted(counts.items())]
    ) if counts else np.zeros(0, np.int16)
    nucleus_id = rng.permutation(len(class_index)).astype(np.int64) + 1
    order = patch_order(class_index, nucleus_id)
    class_index, nucleus_id = class_index[order], nucleus_id[order]
    images = class_patches(class_index, rng)
    edge = np.zeros(len(class_index), dtype=bool)
    with create_slide_patches(store, slide_id, nucleus_id, class_index, edge, PATCH_PX) as w:
        for a in range(0, len(images), block_rows):
            w.write_block(a, images[a : a + block_rows])
    return images


def make_store(
    path: Path, slides: Mapping[str, Mapping[int, int]], seed: int = 0
) -> PatchStore:
    ensure_store(path, PATCH_PX, 0.5, CELL_TYPES)
    for slide_id, counts in slides.items():
        write_slide(path, slide_id, counts, seed)
    return PatchStore(path)


def cohort_manifest(n_patients: int = 20, seed: int = 0) -> pl.DataFrame:
    """A paper-like manifest: half ascending colon, half terminal ileum; a third healthy;
    1-2 slides per patient."""
    rng = np.random.default_rng(seed)
    rows = []
    conditions = ("normal", "inactive_crohns", "active_crohns")
    for p in range(n_patients):
        site = "ascending_colon" if p % 2 == 0 else "terminal_ileum"
        condition = conditions[(p // 2) % 3]
        for s in range(1 + int(rng.integers(0, 2))):
            rows.append((f"P{p:02d}-S{s}", f"P{p:02d}", site, condition))
    return pl.DataFrame(rows, schema=["slide_id", "patient_id", "site", "condition"],
                        orient="row")
