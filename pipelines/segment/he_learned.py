"""The `he-learned` backend: H&E nucleus segmentation learnt from virtual H&E and MxIF masks.

Training pairs are the project's own: a slide's virtual H&E (storage/vhe_store.py) and its
nucleus mask segmented on the nuclear stain (storage/mask_store.py) lie on one grid, so every
MxIF nucleus is a free instance label for the H&E. The network (pipelines/segment/he_unet.py)
learns at one pixel size (`mpp`, 0.5 µm/px by default) from random crops cut at a random scale
around it and re-stained towards real H&E (pipelines/segment/he_augment.py).

Inference takes an RGB window at any pixel size: it is resampled to the network's pixel size,
the foreground and core maps are resampled back to the window's grid, and nuclei
are cut there (so labels lie on the slide's own grid). Windows are tiled and stitched as for
the MxIF backends (pipelines/segment/he_tiling.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from pipelines.errors import ConfigurationError
from pipelines.segment.he_augment import HeAugmentParams, augment_he
from pipelines.segment.he_unet import (
    NucleusUNet,
    PostParams,
    UNetShape,
    labels_from_maps,
    network_input,
    nucleus_targets,
)
from pipelines.vhe.cyclegan.model import select_device, torch_threads

NAME = "he-learned"
TRAIN_HOW = (
    "materialise the `he_nucleus_model` asset (nucleus-subtyping demo --only he_nucleus_model, "
    "after virtual_he and nucleus_mask), or point the backend at a checkpoint folder"
)


@dataclass(frozen=True)
class HeTrainParams:
    """One training run. Lengths in pixels at the network's pixel size `mpp` (µm/px).

    scale: crops are cut at mpp x s with log-uniform s in this range (nuclei of other sizes).
    cpu_threads: torch threads on the CPU (0 = torch's default).
    """

    steps: int = 400
    batch_size: int = 8
    crop_px: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    mpp: float = 0.5
    scale: tuple[float, float] = (0.75, 1.35)
    core_weight: float = 1.0
    unet: UNetShape = field(default_factory=UNetShape)
    augment: HeAugmentParams = field(default_factory=HeAugmentParams)
    post: PostParams = field(default_factory=PostParams)
    cpu_threads: int = 2
    log_every: int = 20
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigurationError(
                f"he-learned training needs steps and batch_size >= 1, got {self.steps} and "
                f"{self.batch_size}."
            )
        if self.crop_px < 2 * self.unet.multiple_px or self.crop_px % self.unet.multiple_px:
            raise ConfigurationError(
                f"crop_px={self.crop_px} must be a multiple of {self.unet.multiple_px} (the "
                f"U-Net's {self.unet.depth} downsamplings) and at least twice that."
            )
        if not 0.05 <= self.mpp <= 5.0 or not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigurationError(
                f"he-learned mpp {self.mpp} µm/px or scale range {self.scale} is implausible."
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, HeTrainParams] = {
    # A few minutes on a 2-core CPU: small U-Net, small crops.
    "demo": HeTrainParams(),
    # A GPU run: wider, deeper network, larger crops and batches, many more steps.
    "paper": HeTrainParams(
        steps=20_000, batch_size=32, crop_px=256, learning_rate=2e-3,
        unet=UNetShape(base_channels=32, depth=4, groups=8), cpu_threads=0, log_every=100,
    ),
}


def he_train_profile(name: str, **overrides: Any) -> HeTrainParams:
    """The named profile with `overrides` (None values ignored) applied."""
    if name not in PROFILES:
        raise ConfigurationError(f"Unknown he-learned profile {name!r}; use {sorted(PROFILES)}.")
    known = {f.name for f in fields(HeTrainParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigurationError(
            f"Unknown he-learned setting(s) {unknown}; known: {sorted(known)}."
        )
    return replace(PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})


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


def segmentation_loss(logits: torch.Tensor, targets: torch.Tensor,
                      core_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy + soft Dice on each head (foreground, core); the core's weighted."""
    parts = {}
    for i, name in enumerate(("foreground", "core")):
        prob = torch.sigmoid(logits[:, i])
        target = targets[:, i]
        parts[f"{name}_bce"] = F.binary_cross_entropy_with_logits(logits[:, i], target)
        parts[f"{name}_dice"] = 1.0 - ((2 * (prob * target).sum() + 1.0)
                                       / (prob.sum() + target.sum() + 1.0))
    total = (parts["foreground_bce"] + parts["foreground_dice"]
             + core_weight * (parts["core_bce"] + parts["core_dice"]))
    return total, {k: float(v.detach()) for k, v in parts.items()}


@dataclass
class HeTrainLog:
    """Losses every `log_every` steps (mean over those steps) and the time taken."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


@dataclass(frozen=True)
class HeModel:
    """Trained weights and what inference needs to use them (stored in the checkpoint)."""

    state_dict: dict[str, torch.Tensor]
    mpp: float
    unet: UNetShape
    post: PostParams
    step: int
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {"backend": NAME, "mpp": self.mpp, "unet": self.unet.to_json(),
                "post": self.post.to_json(), "step": self.step, "extra": self.extra}

    @classmethod
    def from_checkpoint(cls, state_dict: dict[str, Any], metadata: dict[str, Any],
                        source: str = "checkpoint") -> HeModel:
        missing = sorted({"mpp", "unet", "post", "step"} - set(metadata))
        if missing:
            raise ConfigurationError(
                f"{source}: he-learned checkpoint metadata lacks {missing}; retrain: {TRAIN_HOW}."
            )
        return cls(state_dict, float(metadata["mpp"]), UNetShape(**metadata["unet"]),
                   PostParams(**metadata["post"]), int(metadata["step"]),
                   dict(metadata.get("extra", {})))


def train_he_segmenter(
    pairs: Sequence[HePair],
    params: HeTrainParams = HeTrainParams(),
    on_log: Callable[[int, float], None] | None = None,
) -> tuple[HeModel, HeTrainLog]:
    """Train the U-Net on augmented crops of `pairs`; returns the model and its loss log."""
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    sampler = CropSampler(pairs, params, rng)
    device = select_device(params.device)
    model = NucleusUNet(params.unet).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=params.learning_rate,
                                  weight_decay=params.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=params.learning_rate, total_steps=params.steps, pct_start=0.1)
    log = HeTrainLog(device=str(device))
    started = time.perf_counter()
    window: list[tuple[float, dict[str, float]]] = []
    with torch_threads(params.cpu_threads if device.type == "cpu" else None):
        model.train()
        for step in range(1, params.steps + 1):
            images, targets = sampler.batch()
            logits = model(images.to(device))
            loss, parts = segmentation_loss(logits, targets.to(device), params.core_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            window.append((float(loss.detach()), parts))
            if step % params.log_every == 0 or step == params.steps:
                mean = float(np.mean([w[0] for w in window]))
                log.steps.append(step)
                log.loss.append(mean)
                log.parts.append({k: float(np.mean([w[1][k] for w in window]))
                                  for k in window[0][1]})
                window.clear()
                if on_log is not None:
                    on_log(step, mean)
    log.seconds = time.perf_counter() - started
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    extra = {"train": params.to_json(), "slide_ids": [p.slide_id for p in pairs],
             "seconds": round(log.seconds, 2), "device": log.device,
             "last_loss": log.loss[-1] if log.loss else None}
    return HeModel(state, params.mpp, params.unet, params.post, params.steps, extra), log


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
