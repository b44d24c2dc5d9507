"""Training the U-Net on augmented crops: cross-entropy plus soft Dice on the foreground and
core heads, AdamW with a one-cycle schedule, losses logged every `log_every` steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from pipelines.segment.he_learned.crops import CropSampler, HePair
from pipelines.segment.he_learned.model import HeModel
from pipelines.segment.he_learned.params import DEFAULT_TRAIN_PARAMS, HeTrainParams
from pipelines.segment.he_unet import (
    NucleusUNet,
)
from pipelines.torch_device import select_device, torch_threads


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


def train_he_segmenter(
    pairs: Sequence[HePair],
    params: HeTrainParams = DEFAULT_TRAIN_PARAMS,
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
