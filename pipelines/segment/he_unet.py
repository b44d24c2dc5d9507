"""The he-learned network: a small U-Net with a foreground and a nucleus-core head.

Targets (from an instance mask): `foreground` = 1 inside any nucleus; `core` = 1 where a
nucleus's Euclidean distance to its own border is at least `CORE_FRACTION` of its largest, i.e.
the inner part of every nucleus whatever its size (the distance-map idea of Naylor et al. and
HoVer-Net, cut to a binary target, which a small network learns in few steps). Touching nuclei
have separate cores, so each core is one seed, and a watershed grows it back to the foreground.

Inputs: the window's colours standardised (mean 0, std 1 per channel, so a paler or darker
slide starts on the same footing) beside its optical density -ln(I / 255) (absolute dye
amounts, so faint texture that standardisation blows up still reads as faint). Group norm:
no batch statistics, so a window segments the same alone or in a batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.segmentation import watershed
from torch import nn
from torch.nn import functional as F

from pipelines.errors import ConfigurationError

INPUT_CHANNELS = 6
CORE_FRACTION = 0.5


@dataclass(frozen=True)
class UNetShape:
    """Channels of the first level (doubled at each of `depth` downsamplings), groups of norm."""

    base_channels: int = 16
    depth: int = 3
    groups: int = 4

    def __post_init__(self) -> None:
        if self.base_channels < self.groups or self.base_channels % self.groups or self.depth < 1:
            raise ConfigurationError(
                f"U-Net shape needs depth >= 1 and base_channels a multiple of groups: {self}."
            )

    @property
    def multiple_px(self) -> int:
        """Input sides must be a multiple of this (inference pads to it)."""
        return 2**self.depth

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def _block(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out),
        nn.ReLU(inplace=True),
    )


class NucleusUNet(nn.Module):
    """(n, 6, h, w) inputs (see `network_input`) -> (n, 2, h, w) logits: foreground, core."""

    def __init__(self, shape: UNetShape = UNetShape()) -> None:
        super().__init__()
        self.shape = shape
        widths = [shape.base_channels * 2**i for i in range(shape.depth + 1)]
        self.down = nn.ModuleList([_block(INPUT_CHANNELS, widths[0], shape.groups)])
        self.down.extend(_block(widths[i], widths[i + 1], shape.groups)
                         for i in range(shape.depth))
        self.up = nn.ModuleList(
            _block(widths[i + 1] + widths[i], widths[i], shape.groups)
            for i in reversed(range(shape.depth))
        )
        self.head = nn.Conv2d(widths[0], 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def network_input(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (6, h, w) float32: standardised colours, then optical density."""
    x = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1)
    od = -np.log(np.maximum(x, 1.0) / 255.0)
    x /= 255.0
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return np.concatenate([(x - mean) / np.maximum(std, 0.02), od])


def nucleus_targets(labels: np.ndarray) -> np.ndarray:
    """(2, h, w) float32 0/1: foreground and core (see the module docstring)."""
    ids, inverse = np.unique(np.asarray(labels), return_inverse=True)
    labels = inverse.reshape(np.shape(labels)).astype(np.int32)  # 1..n, whatever the ids
    if ids[0] != 0:
        labels += 1
    out = np.zeros((2, *labels.shape), dtype=np.float32)
    out[0] = labels > 0
    if not out[0].any():
        return out
    # Pixels next to another nucleus count as border, so touching nuclei get separate centres.
    higher = ndi.maximum_filter(labels, size=3) != labels
    lower = ndi.minimum_filter(np.where(labels == 0, labels.max() + 1, labels), size=3) < labels
    inside = (labels > 0) & ~higher & ~lower
    distance = ndi.distance_transform_edt(inside).astype(np.float32)
    peak = ndi.maximum(distance, labels, index=np.arange(labels.max() + 1))
    peak = np.asarray(peak, dtype=np.float32)
    scale = np.where(peak > 0, peak, 1.0)[labels]
    out[1] = (labels > 0) & (distance >= CORE_FRACTION * scale)
    return out


@dataclass(frozen=True)
class PostParams:
    """From network maps to nuclei; areas in µm² at the network's pixel size.

    foreground: probability above which a pixel is nucleus. seed: core probability above which
    a pixel seeds a nucleus. min_seed_um2 / min_area_um2: smaller seeds / nuclei are dropped.
    """

    foreground: float = 0.5
    seed: float = 0.5
    min_seed_um2: float = 1.0
    min_area_um2: float = 8.0

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def labels_from_maps(
    foreground: np.ndarray, core: np.ndarray, mpp: float, params: PostParams = PostParams()
) -> np.ndarray:
    """int32 nuclei from foreground and core probabilities (both (h, w) in [0, 1]).

    Seeds: connected regions of core > seed inside the foreground; each grows by watershed
    on -core within the foreground. Foreground without a seed is dropped.
    """
    mask = foreground > params.foreground
    out = np.zeros(mask.shape, dtype=np.int32)
    if not mask.any():
        return out
    mask = ndi.binary_fill_holes(mask)
    seeds, n = ndi.label(mask & (core > params.seed))
    if n == 0:
        return out
    px_um2 = mpp * mpp
    sizes = np.bincount(seeds.ravel())
    small = sizes * px_um2 < params.min_seed_um2
    small[0] = False
    if small.any():
        seeds[small[seeds]] = 0
    labels = watershed(-core, seeds, mask=mask).astype(np.int32)
    areas = np.bincount(labels.ravel())
    small = areas * px_um2 < params.min_area_um2
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return labels
