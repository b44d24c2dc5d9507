"""Trained he-learned weights with what inference needs to use them (pixel size, U-Net
shape, post-processing), as stored in the checkpoint's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pipelines.errors import ConfigurationError
from pipelines.segment.he_learned.params import NAME, TRAIN_HOW
from pipelines.segment.he_unet import (
    PostParams,
    UNetShape,
)


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
