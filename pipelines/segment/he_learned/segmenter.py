"""The he-learned segmenter: an RGB window at any pixel size resampled to the network's, its
foreground and core maps resampled back, nuclei cut on the window's own grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from pipelines.errors import ConfigurationError
from pipelines.segment.he_learned.crops import resize_rgb
from pipelines.segment.he_learned.model import HeModel
from pipelines.segment.he_learned.params import NAME, TRAIN_HOW
from pipelines.segment.he_unet import (
    NucleusUNet,
    PostParams,
    labels_from_maps,
    network_input,
)
from pipelines.torch_device import select_device, torch_threads


class HeLearnedSegmenter:
    """The `he-learned` backend: `segment_rgb(rgb, mpp)` -> int32 nucleus labels, 0 = none.

    `halo_um` is the context a tile wants on each side (the largest nucleus plus some of the
    network's field of view); `tta` averages the maps over the eight flips and quarter turns.
    """

    name = NAME

    def __init__(self, model: HeModel, device: str | None = None, *, halo_um: float = 24.0,
                 tta: bool = False, post: PostParams | None = None) -> None:
        self.model = model
        self.device = select_device(device)
        self.net = NucleusUNet(model.unet).to(self.device)
        self.net.load_state_dict(model.state_dict)
        self.net.eval()
        self.halo_um, self.tta = float(halo_um), bool(tta)
        self.post = post or model.post

    @property
    def mpp(self) -> float:
        """The network's pixel size (µm/px)."""
        return self.model.mpp

    @property
    def halo_px(self) -> int:
        return self.halo_for(self.mpp)

    def halo_for(self, mpp: float) -> int:
        return math.ceil(self.halo_um / _positive_mpp(mpp))

    def maps(self, rgb: np.ndarray, mpp: float) -> np.ndarray:
        """(2, h, w) float32 foreground and core probabilities on the window's grid."""
        rgb = _check_rgb(rgb)
        h, w = rgb.shape[:2]
        scale = _positive_mpp(mpp) / self.mpp
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        x = torch.from_numpy(network_input(resize_rgb(rgb, nh, nw)))[None]
        m = self.model.unet.multiple_px
        pad_h, pad_w = (-nh) % m, (-nw) % m
        mode = "reflect" if pad_h < nh and pad_w < nw else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode).to(self.device)
        with torch.no_grad():
            prob = self._forward(x)[:, :, :nh, :nw]
            if (nh, nw) != (h, w):
                prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
        return prob[0].cpu().numpy().astype(np.float32)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.tta:
            return torch.sigmoid(self.net(x))
        total = torch.zeros((x.shape[0], 2, *x.shape[-2:]), device=x.device)
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, dims=(2, 3))
                t = torch.flip(t, dims=(3,)) if flip else t
                y = torch.sigmoid(self.net(t))
                y = torch.flip(y, dims=(3,)) if flip else y
                total += torch.rot90(y, -k, dims=(2, 3))
        return total / 8.0

    def segment_rgb(self, rgb: np.ndarray, mpp: float) -> np.ndarray:
        """int32 nucleus labels (h, w) of an (h, w, 3) uint8 H&E window at `mpp` µm/px."""
        maps = self.maps(rgb, mpp)
        with torch_threads(None):
            return labels_from_maps(maps[0], maps[1], mpp, self.post)


BUILD_SETTINGS = ("model_path", "device", "halo_um", "tta")


def build(settings: Mapping[str, Any]) -> HeLearnedSegmenter:
    """The registry's factory: the weights at `model_path` (a he_nucleus_model checkpoint
    folder, storage/he_segmenter_checkpoints.py); `device`, `halo_um` and `tta` as in
    HeLearnedSegmenter. The chain fills `model_path` with the data root's models/he_learned."""
    from storage.he_segmenter_checkpoints import load_he_segmenter

    unknown = sorted(set(settings) - set(BUILD_SETTINGS))
    if unknown:
        raise ConfigurationError(
            f"he-learned has no setting(s) {unknown}; it takes {list(BUILD_SETTINGS)}.")
    folder = settings.get("model_path")
    if not folder:
        raise ConfigurationError(
            "he-learned needs `model_path`, the checkpoint folder the he_nucleus_model asset "
            f"writes (<data root>/models/he_learned); {TRAIN_HOW}.")
    state, metadata = load_he_segmenter(folder, how_to_train=TRAIN_HOW)
    model = HeModel.from_checkpoint(state, metadata, source=str(folder))
    return HeLearnedSegmenter(model, settings.get("device"),
                              halo_um=float(settings.get("halo_um", 24.0)),
                              tta=bool(settings.get("tta", False)))


def _positive_mpp(mpp: float) -> float:
    if not mpp or not math.isfinite(mpp) or mpp <= 0:
        raise ConfigurationError(
            f"The he-learned backend needs the H&E pixel size in µm/px; got {mpp!r}. Give the "
            "slide's mpp (about 0.25 at 40x, 0.5 at 20x)."
        )
    return float(mpp)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ConfigurationError(
            f"The he-learned backend segments RGB H&E as (h, w, 3) uint8; got {rgb.shape} "
            f"{rgb.dtype}. Convert the slide to 8-bit RGB first."
        )
    return rgb
