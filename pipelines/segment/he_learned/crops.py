"""Training pairs (a slide's virtual H&E and nucleus labels on one grid) and the random,
re-stained crops cut from them at the network's pixel size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from pipelines.errors import ConfigurationError
from pipelines.segment.he_augment import augment_he
from pipelines.segment.he_learned.params import HeTrainParams
from pipelines.segment.he_unet import (
    network_input,
    nucleus_targets,
)


class Windows(Protocol):
    """Reads a window (y0, x0, y1, x1): VirtualHEReader, MaskReader and ArrayWindows fit."""

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray: ...


class ArrayWindows:
    """An in-memory array with the window reader interface."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.asarray(array)

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        return self.array[y0:y1, x0:x1]


@dataclass(frozen=True)
class HePair:
    """One slide's virtual H&E (h, w, 3) uint8 and nucleus labels (h, w) on one grid."""

    slide_id: str
    rgb: Windows
    labels: Windows
    mpp: float
    height_px: int
    width_px: int


def resize_rgb(rgb: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """Bilinear (area-averaging when shrinking) resize of (h, w, 3) uint8."""
    if rgb.shape[:2] == (height_px, width_px):
        return np.ascontiguousarray(rgb)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(image.resize((width_px, height_px), Image.Resampling.BILINEAR))


def resize_labels(labels: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """Nearest-neighbour resize of (h, w) integer labels (int32)."""
    labels = np.asarray(labels)
    if labels.shape == (height_px, width_px):
        return labels.astype(np.int32, copy=False)
    ids, inverse = np.unique(labels, return_inverse=True)
    image = Image.fromarray(inverse.reshape(labels.shape).astype(np.int32), mode="I")
    small = np.asarray(image.resize((width_px, height_px), Image.Resampling.NEAREST))
    return ids[small].astype(np.int32)


class CropSampler:
    """Random training crops at the network's pixel size, each at a random scale, augmented."""

    def __init__(self, pairs: Sequence[HePair], params: HeTrainParams,
                 rng: np.random.Generator) -> None:
        if not pairs:
            raise ConfigurationError(
                "he-learned training has no slides: it needs virtual H&E and nucleus masks; "
                "materialise virtual_he and nucleus_mask first."
            )
        self.pairs, self.params, self.rng = list(pairs), params, rng
        area = np.array([p.height_px * p.width_px for p in self.pairs], dtype=np.float64)
        self.weights = area / area.sum()

    def crop(self) -> tuple[np.ndarray, np.ndarray]:
        """(h, w, 3) uint8 and (h, w) int32 labels, crop_px a side."""
        p = self.params
        pair = self.pairs[int(self.rng.choice(len(self.pairs), p=self.weights))]
        s = math.exp(self.rng.uniform(math.log(p.scale[0]), math.log(p.scale[1])))
        side = max(8, round(p.crop_px * p.mpp * s / pair.mpp))
        if side > min(pair.height_px, pair.width_px):
            raise ConfigurationError(
                f"Slide {pair.slide_id!r} ({pair.height_px} x {pair.width_px} px at {pair.mpp} "
                f"µm/px) is smaller than one training crop ({side} px); lower crop_px."
            )
        y0 = int(self.rng.integers(0, pair.height_px - side + 1))
        x0 = int(self.rng.integers(0, pair.width_px - side + 1))
        rgb = resize_rgb(np.asarray(pair.rgb.read(y0, x0, y0 + side, x0 + side)), p.crop_px,
                         p.crop_px)
        labels = resize_labels(pair.labels.read(y0, x0, y0 + side, x0 + side), p.crop_px,
                               p.crop_px)
        return augment_he(rgb, labels, self.rng, p.augment)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 3, h, w) standardised inputs and (n, 2, h, w) targets."""
        images, targets = [], []
        for _ in range(self.params.batch_size):
            rgb, labels = self.crop()
            images.append(network_input(rgb))
            targets.append(nucleus_targets(labels))
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))
