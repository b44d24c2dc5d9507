"""Glue of the he-learned training asset: pairs from the stores, a hold-out score, a preview.
No science here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from skimage.segmentation import find_boundaries

from pipelines.segment.instance_f1 import match_instances
from storage.layout import DataLayout
from storage.manifest import read_manifest_parquet
from storage.mask_store import open_mask
from storage.png import write_rgb_png
from storage.vhe_store import open_vhe

# pipelines.segment.he_learned (torch) loads in the training step, not with the definitions.
if TYPE_CHECKING:
    from pipelines.segment.he_learned import HeLearnedSegmenter, HePair

HOLDOUT_PX = 512
OUTLINE_RGB = (0, 255, 0)


def training_pairs(layout: DataLayout, max_slides: int) -> list[HePair]:
    """Slides with both a virtual H&E and a nucleus mask, in manifest order (else by id)."""
    from pipelines.segment.he_learned import HePair

    if layout.manifest_parquet.exists():
        ids = read_manifest_parquet(layout.manifest_parquet)["slide_id"].to_list()
    else:
        ids = sorted(p.name.removesuffix(".zarr") for p in
                     layout.vhe_zarr("x").parent.glob("*.zarr"))
    pairs = []
    for slide_id in ids:
        vhe_path, mask_path = layout.vhe_zarr(slide_id), layout.mask_zarr(slide_id)
        if not (vhe_path.exists() and mask_path.exists()):
            continue
        vhe, mask = open_vhe(vhe_path), open_mask(mask_path)
        pairs.append(HePair(slide_id, vhe, mask, vhe.mpp, mask.height_px, mask.width_px))
        if len(pairs) == max_slides:
            break
    return pairs


@dataclass(frozen=True)
class Holdout:
    """The segmenter on a slide it did not see, against that slide's MxIF nucleus mask."""

    slide_id: str
    f1_iou50: float
    f1_iou30: float
    n_true: int
    n_pred: int
    preview: Path


def score_holdout(pair: HePair, segmenter: HeLearnedSegmenter, figure: Path) -> Holdout:
    """F1 at IoU 0.5 and 0.3 on the top-left corner; PNG: MxIF mask | he-learned, as outlines."""
    h, w = min(HOLDOUT_PX, pair.height_px), min(HOLDOUT_PX, pair.width_px)
    rgb = np.asarray(pair.rgb.read(0, 0, h, w))
    true = np.asarray(pair.labels.read(0, 0, h, w))
    pred = segmenter.segment_rgb(rgb, pair.mpp)
    scores = [match_instances(true, pred, t) for t in (0.5, 0.3)]
    panels = []
    for labels in (true, pred):
        panel = rgb.copy()
        panel[find_boundaries(labels, mode="inner")] = OUTLINE_RGB
        panels.append(panel)
    path = write_rgb_png(figure, np.concatenate(panels, axis=1))
    return Holdout(pair.slide_id, round(scores[0].f1, 4), round(scores[1].f1, 4),
                   scores[0].n_true, scores[0].n_pred, path)
