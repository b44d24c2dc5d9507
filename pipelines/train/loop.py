"""Training of one fold (§2.4): Adam, one-cycle schedule, cross-entropy, best validation loss.

Batches come class-balanced from `BalancedPatchLoader`; inputs are the stored uint8 RGB patches
scaled to [0, 1]. Every `val_interval` steps the class-balanced validation loss (the mean over
classes of each class's mean cross-entropy, on a fixed seeded subset of validation patches) is
computed and the weights with the lowest one are kept. State for an exact resume is handed to
`on_checkpoint` every `checkpoint_interval` steps; the caller decides where it is stored.

On CUDA: bf16 autocast (fp16 + GradScaler where bf16 is missing), channels_last, fused Adam,
pinned staging buffers and non-blocking copies. On CPU everything runs in float32.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.cell_types import CELL_TYPES
from pipelines.errors import ConfigurationError
from pipelines.torch_device import select_device
from pipelines.train.loader import (
    BalancedPatchLoader,
    ChunkSource,
    LoaderParams,
    LoaderStats,
    balanced_rows,
    read_rows,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainParams:
    """One fold's training settings; see pipelines/train/profiles.py for named profiles."""

    steps: int = 20_000
    batch_size: int = 256
    lr: float = 1e-3
    val_interval: int = 250
    val_per_class: int = 512
    checkpoint_interval: int = 1000
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    reservoir_rows: int = 4096
    reuse: float = 2.0
    loader_threads: int = 2
    eval_batch_size: int = 1024
    cpu_threads: int = 0  # torch threads on CPU; 0 leaves torch's default

    def loader_params(self) -> LoaderParams:
        return LoaderParams(
            batch_size=self.batch_size,
            reservoir_rows=self.reservoir_rows,
            reuse=self.reuse,
            augment=self.augment,
            seed=self.seed,
            threads=self.loader_threads,
        )


# Settings that change only speed, not the weights a run ends with: a checkpoint written under
# other values of these may be resumed.
_SPEED_ONLY = ("device", "amp", "channels_last", "loader_threads", "eval_batch_size",
               "checkpoint_interval", "cpu_threads")


@dataclass
class TrainResult:
    """The kept weights (CPU tensors) and how training went; `history` has one row per
    validation: step, train_loss (mean since the last validation), val_loss, lr."""

    best_state: dict[str, torch.Tensor]
    best_step: int
    best_val_loss: float
    history: list[dict[str, float]]
    steps: int
    seconds: float
    steps_per_s: float
    device: str
    precision: str
    classes_trained: list[int]
    loader: LoaderStats = field(default_factory=LoaderStats)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def to_input(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]; NHWC storage is kept as
    channels_last when asked, else made contiguous NCHW."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    return x if channels_last else x.contiguous()


class _Stager:
    """Moves uint8 batches to the device: pinned ring buffers + non-blocking copies on CUDA."""

    def __init__(self, device: torch.device, shape: tuple[int, ...], slots: int = 3) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.slots = slots
        self.i = 0
        if self.cuda:
            self.host = [torch.empty(shape, dtype=torch.uint8).pin_memory() for _ in range(slots)]
            self.labels = [torch.empty(shape[0], dtype=torch.int64).pin_memory()
                           for _ in range(slots)]
            self.events: list[torch.cuda.Event | None] = [None] * slots

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, ...]:
        if not self.cuda:
            return (torch.from_numpy(images).to(self.device),
                    torch.from_numpy(labels).to(self.device))
        i = self.i
        self.i = (i + 1) % self.slots
        event = self.events[i]
        if event is not None:
            event.synchronize()  # the copy out of this slot has finished
        host, host_labels = self.host[i][: len(images)], self.labels[i][: len(labels)]
        host.numpy()[...] = images
        host_labels.numpy()[...] = labels
        x = host.to(self.device, non_blocking=True)
        y = host_labels.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.events[i] = event
        return x, y


@torch.no_grad()
def class_balanced_loss(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    device: torch.device,
    batch_size: int = 1024,
    precision: torch.dtype | None = None,
    channels_last: bool = False,
) -> float:
    """Mean over the classes present of each class's mean cross-entropy."""
    if len(labels) == 0:
        return math.nan
    was_training = model.training
    model.eval()
    losses = np.empty(len(labels), dtype=np.float64)
    for a in range(0, len(labels), batch_size):
        x = to_input(torch.from_numpy(images[a : a + batch_size]).to(device), channels_last)
        y = torch.from_numpy(labels[a : a + batch_size].astype(np.int64)).to(device)
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            logits = model(x)
        losses[a : a + len(y)] = nn.functional.cross_entropy(
            logits.float(), y, reduction="none"
        ).cpu().numpy()
    model.train(was_training)
    per_class = [losses[labels == c].mean() for c in np.unique(labels)]
    return float(np.mean(per_class))


def _check_resume(resume: Mapping[str, Any], params: TrainParams) -> None:
    saved = dict(resume.get("params", {}))
    now = asdict(params)
    diff = sorted(k for k in now if k not in _SPEED_ONLY and saved.get(k) != now[k])
    if diff:
        raise ConfigurationError(
            f"The checkpoint was written with other settings ({', '.join(diff)}); "
            "delete it or train with the same profile."
        )


def train_classifier(
    model: nn.Module,
    train_sources: Sequence[ChunkSource],
    val_sources: Sequence[ChunkSource],
    params: TrainParams,
    n_classes: int = len(CELL_TYPES),
    resume: Mapping[str, Any] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, float | None], None] | None = None,
) -> TrainResult:
    """Train `model` in place for `params.steps` steps; returns the weights of the step with
    the lowest class-balanced validation loss. `resume` is a state `on_checkpoint` received."""
    torch.manual_seed(params.seed)
    device = select_device(params.device)
    precision = autocast_dtype(device, params.amp)
    channels_last = params.channels_last and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, **fused)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=params.lr, total_steps=params.steps
    )
    scaler = torch.amp.GradScaler("cuda", enabled=precision is torch.float16)

    val_s, val_r, val_labels = balanced_rows(
        val_sources, n_classes, params.val_per_class, params.seed
    )
    val_images = read_rows(val_sources, val_s, val_r)
    if len(val_labels) == 0:
        raise ConfigurationError("The validation slides hold no labelled patches.")

    start, best_step, best_loss = 0, 0, math.inf
    resumed_running: tuple[float, int] = (0.0, 0)
    best_state: dict[str, torch.Tensor] = {}
    history: list[dict[str, float]] = []
    elapsed_before = 0.0
    if resume is not None:
        _check_resume(resume, params)
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        start = int(resume["step"])
        best_step, best_loss = int(resume["best_step"]), float(resume["best_val_loss"])
        best_state = dict(resume["best_state"])
        history = list(resume["history"])
        elapsed_before = float(resume.get("seconds", 0.0))
        torch.set_rng_state(resume["torch_rng"])
        resumed_running = resume.get("running_loss", (0.0, 0))

    def state_now(step: int, seconds: float) -> dict[str, Any]:
        return {
            "step": step,
            "model": _cpu_state(model),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "best_step": best_step,
            "best_val_loss": best_loss,
            "best_state": best_state,
            "history": list(history),
            "params": asdict(params),
            "seconds": seconds,
            "torch_rng": torch.get_rng_state(),
            "running_loss": (float(running.item()), n_running),
        }

    loader_params = params.loader_params()
    stager = _Stager(device, (params.batch_size, *val_images.shape[1:]))
    running = torch.tensor(float(resumed_running[0]), device=device)
    n_running = int(resumed_running[1])
    t0 = time.perf_counter()
    with BalancedPatchLoader(train_sources, n_classes, loader_params) as loader:
        batches = loader.batches(start)
        for step in range(start + 1, params.steps + 1):
            batch = next(batches)
            x, y = stager(batch.images, batch.labels)
            x = to_input(x, channels_last)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            running += loss.detach()
            n_running += 1
            val_loss = None
            if step % params.val_interval == 0 or step == params.steps:
                val_loss = class_balanced_loss(
                    model, val_images, val_labels, device, params.eval_batch_size,
                    precision, channels_last,
                )
                history.append({
                    "step": step,
                    "train_loss": float(running.item()) / max(n_running, 1),
                    "val_loss": val_loss,
                    "lr": float(scheduler.get_last_lr()[0]),
                })
                running.zero_()
                n_running = 0
                if val_loss < best_loss:
                    best_loss, best_step, best_state = val_loss, step, _cpu_state(model)
                log.info("step %d val_loss %.4f (best %.4f at %d)", step, val_loss, best_loss,
                         best_step)
            if on_checkpoint is not None and (
                step % params.checkpoint_interval == 0 and step < params.steps
            ):
                on_checkpoint(state_now(step, elapsed_before + time.perf_counter() - t0))
            if on_step is not None:
                on_step(step, val_loss)
        batches.close()
        stats = loader.stats
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    done = params.steps - start
    return TrainResult(
        best_state=best_state,
        best_step=best_step,
        best_val_loss=best_loss,
        history=history,
        steps=params.steps,
        seconds=elapsed_before + seconds,
        steps_per_s=done / seconds if seconds > 0 else math.nan,
        device=str(device) + (f" ({torch.cuda.get_device_name(device)})"
                              if device.type == "cuda" else ""),
        precision=str(precision).replace("torch.", "") if precision else "float32",
        classes_trained=[int(c) for c in loader.present],
        loader=stats,
    )


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
