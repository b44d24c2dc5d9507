"""Putting a training run together: stains, per-slide normalisation, samplers, networks, and
what a checkpoint holds. The caller (the Dagster asset) reads and writes the files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipelines.errors import ConfigurationError, StainError
from pipelines.stains import IMMUNE_IDENTITY_STAINS, NUCLEAR_STAIN
from pipelines.torch_device import select_device
from pipelines.vhe.cyclegan.data import (
    HeCropSampler,
    HeTiles,
    MxifCropSampler,
    SlideWindows,
    StainNormalisation,
    read_stains,
    slide_pixel_sample,
    training_stains,
)
from pipelines.vhe.cyclegan.infer import BlendParams, CycleGanBackend
from pipelines.vhe.cyclegan.model import Architecture, build_networks
from pipelines.vhe.cyclegan.train import CycleGanTrainer, TrainingLog, TrainParams
from storage.checkpoints import CycleGanInfo

# Which stains the generator sees, by name. "histology" (the default) withholds the stains that
# name an immune cell's identity: a generator that sees CD3d or CD4 can turn them into colour,
# which real H&E cannot show, and the classifier would learn it (the learnability benchmark's
# leak guard). "all" feeds every stain of the slides.
INPUT_STAINS: dict[str, tuple[str, ...]] = {"histology": IMMUNE_IDENTITY_STAINS, "all": ()}


def withheld_stains(input_stains: str) -> tuple[str, ...]:
    """The stains the named input set leaves out; a clear error for an unknown name."""
    if input_stains not in INPUT_STAINS:
        raise ConfigurationError(
            f"input_stains must be one of {sorted(INPUT_STAINS)}, not {input_stains!r}.")
    return INPUT_STAINS[input_stains]


@dataclass
class TrainingRun:
    trainer: CycleGanTrainer
    mxif: MxifCropSampler
    he: HeCropSampler
    normalisations: list[StainNormalisation]  # one per training slide
    pooled: StainNormalisation  # median over slides, the fallback stored in the checkpoint
    mpp: float


def prepare_run(
    slides: Sequence[SlideWindows],
    he_tiles: HeTiles,
    architecture: Mapping[str, int],
    params: TrainParams,
    *,
    he_mpp: float | None = None,
    device: str | None = None,
    nuclear_stain: str = NUCLEAR_STAIN,
    input_stains: str = "histology",
) -> TrainingRun:
    """Fresh networks and samplers for `slides` (all with the same stains and pixel size),
    the generator fed the `input_stains` set (see INPUT_STAINS)."""
    stains = training_stains(slides, withheld_stains(input_stains))
    mpps = sorted({round(float(s.info.mpp), 4) for s in slides})
    if len(mpps) != 1:
        raise ConfigurationError(
            f"Training slides have pixel sizes {mpps} µm/px; train on slides of one pixel size."
        )
    rng = np.random.default_rng(params.seed)
    normalisations = [
        StainNormalisation.from_sample(
            slide_pixel_sample(s, stains, rng), stains,
            params.norm_low_percentile, params.norm_high_percentile,
        )
        for s in slides
    ]
    pooled = StainNormalisation(
        stains,
        np.median([n.low for n in normalisations], axis=0),
        np.median([n.high for n in normalisations], axis=0),
    )
    arch = Architecture(n_stains=len(stains), **dict(architecture))
    nets = build_networks(arch, seed=params.seed)
    trainer = CycleGanTrainer(nets, arch, params, stains, nuclear_stain, select_device(device))
    mxif = MxifCropSampler(slides, stains, normalisations, params.crop_px, rng)
    scale = 1.0 if he_mpp is None else mpps[0] / float(he_mpp)
    he = HeCropSampler(he_tiles, params.crop_px, rng, scale=scale)
    return TrainingRun(trainer, mxif, he, normalisations, pooled, mpps[0])


def checkpoint_payload(
    run: TrainingRun, log: TrainingLog | None = None, extra: Mapping[str, Any] | None = None
) -> tuple[dict[str, dict[str, Any]], CycleGanInfo]:
    """State dicts (networks + optimisers) and sidecar info for the run as it stands."""
    trainer = run.trainer
    info = CycleGanInfo(
        stains=trainer.stains,
        norm_low=tuple(run.pooled.low.tolist()),
        norm_high=tuple(run.pooled.high.tolist()),
        mpp=run.mpp,
        architecture=trainer.architecture.to_json(),
        step=trainer.step,
        norm_low_percentile=trainer.params.norm_low_percentile,
        norm_high_percentile=trainer.params.norm_high_percentile,
        extra={
            "train_params": trainer.params.to_json(),
            "last_losses": log.mean_of_last() if log else {},
            **dict(extra or {}),
        },
    )
    return trainer.state_dicts(), info


def resume_run(run: TrainingRun, states: dict[str, dict[str, Any]], info: CycleGanInfo) -> None:
    """Load a checkpoint into a prepared run, refusing one made for other stains or sizes."""
    trainer = run.trainer
    if tuple(info.stains) != trainer.stains:
        missing = [s for s in info.stains if s not in trainer.stains]
        extra = [s for s in trainer.stains if s not in info.stains]
        raise StainError(
            "The checkpoint to resume was trained on other stains"
            f" (missing from these slides: {missing or 'none'}; new on these slides: "
            f"{extra or 'none'}; or another order). Delete the checkpoint to start afresh."
        )
    if dict(info.architecture) != trainer.architecture.to_json():
        raise ConfigurationError(
            f"The checkpoint to resume has architecture {dict(info.architecture)}, the config asks "
            f"for {trainer.architecture.to_json()}; use the same profile or delete the checkpoint."
        )
    trainer.load_state_dicts(states, info.step)


def preview(run: TrainingRun, slide: SlideWindows, he_tile: np.ndarray, size_px: int = 192,
            nuclear_stain: str = NUCLEAR_STAIN) -> np.ndarray:
    """A (size, 3 * size, 3) uint8 panel: nuclear stain | virtual H&E | a real H&E tile."""
    trainer = run.trainer
    h, w = slide.info.height_px, slide.info.width_px
    size = min(size_px, h, w) // 4 * 4
    y0, x0 = (h - size) // 2, (w - size) // 2
    raw = read_stains(slide, y0, x0, y0 + size, x0 + size, trainer.stains)
    index = run.mxif.slides.index(slide) if slide in run.mxif.slides else 0
    generator = trainer.nets.generator_mxif_to_he
    info = checkpoint_payload(run)[1]
    backend = CycleGanBackend(
        generator, info, run.normalisations[index],
        blend=BlendParams(patch_px=min(256, size), batch_size=2), device=trainer.device,
    )
    try:
        virtual = backend.render(raw, trainer.stains, run.mpp)
    finally:
        generator.train()
    nuclear = run.normalisations[index].apply(raw)[trainer.stains.index(nuclear_stain)] \
        if nuclear_stain in trainer.stains else torch.zeros(size, size)
    grey = ((nuclear + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    real = _fit(he_tile, size)
    return np.concatenate([np.repeat(grey[..., None], 3, axis=2), virtual, real], axis=1)


def _fit(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre crop or pad a tile to (size, size, 3)."""
    out = np.full((size, size, 3), 255, np.uint8)
    h, w = rgb.shape[:2]
    ch, cw = min(h, size), min(w, size)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    out[:ch, :cw] = rgb[sy : sy + ch, sx : sx + cw]
    return out
