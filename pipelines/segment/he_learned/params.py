"""The backend's name and how one training run of the he-learned U-Net is set: the named
profiles (`demo`, `paper`) and their overrides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pipelines.errors import ConfigurationError
from pipelines.segment.he_augment import HeAugmentParams
from pipelines.segment.he_unet import (
    PostParams,
    UNetShape,
)

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


# The defaults: a few minutes on a 2-core CPU, small U-Net, small crops.
DEFAULT_TRAIN_PARAMS = HeTrainParams()

PROFILES: dict[str, HeTrainParams] = {
    "demo": DEFAULT_TRAIN_PARAMS,
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
