"""Whole-slide CycleGAN inference without tile seams.

A generator with instance normalisation gives a pixel a value that depends on the whole patch it
was computed in, so abutting patches disagree at their borders (seams). Here a window is covered
by patches of `patch_px` at a stride of `patch_px * (1 - overlap)` (default half a patch), and
every output pixel is the average of the patches covering it, weighted by a 2-D Hann window
(sin^2 ramps: 1 at the patch centre, 0 at its border) and normalised by the summed weights. A
pixel near one patch's border thus takes its value mostly from a patch in which it lies near the
centre, and since every weight falls to 0 at its patch's border the blend has no jumps. Patch
sides on the window's edge keep weight 1 (nothing else covers the pixels there).

Patch positions start at multiples of the stride from the window's origin, with one extra patch
flush with the window's far edge. The streaming layer reads each tile with `halo_px = patch_px`
of context (clipped at the slide border); when its tile size is a multiple of the stride, every
window origin is a multiple of the stride too, all windows share one global patch grid, and every
patch that covers a core pixel lies inside the window. Tiled rendering then equals rendering the
whole slide at once (tests/pipelines/test_cyclegan_infer.py), so tile seams cannot appear
(`CycleGanBackend.tile_multiple_px` is that stride). With other tile sizes neighbouring windows
use shifted patch grids: pixels differ by a few grey levels from whole-slide rendering, but the
blend still leaves no visible seam (seam ratio 1.03 against 1.01 measured for a trained model).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.errors import SlideInputError, StainError
from pipelines.stains import canonical_stain
from pipelines.torch_device import select_device
from pipelines.vhe.base import VirtualHEBackend
from pipelines.vhe.cyclegan.data import StainNormalisation
from pipelines.vhe.cyclegan.model import ResnetGenerator
from storage.checkpoints import CycleGanInfo, load_cyclegan_checkpoint

GENERATOR_PART = "generator_mxif_to_he"


@dataclass(frozen=True)
class BlendParams:
    """Sliding-window settings: patch size (multiple of 4), overlap fraction, patches per batch."""

    patch_px: int = 256
    overlap: float = 0.5
    batch_size: int = 4
    blend: bool = True  # False: abutting patches, no overlap (the naive tiling, for comparison)

    @property
    def stride_px(self) -> int:
        if not self.blend:
            return self.patch_px
        return max(4, round(self.patch_px * (1.0 - self.overlap)) // 4 * 4)


def hann_ramp(patch_px: int, flat_start: bool = False, flat_end: bool = False) -> torch.Tensor:
    """(patch_px,) weights sin^2(pi * i / patch_px): 0 at the patch's first pixel, 1 at its centre.

    At half overlap, neighbouring ramps sum to exactly 1 (sin^2 + cos^2). A side that lies on the
    window's edge is flat (1) instead, since no other patch covers the pixels there.
    """
    ramp = torch.sin(torch.pi * torch.arange(patch_px, dtype=torch.float64) / patch_px) ** 2
    half = patch_px // 2
    if flat_start:
        ramp[:half] = 1.0
    if flat_end:
        ramp[half:] = 1.0
    return ramp.float()


def hann_weights(patch_px: int) -> torch.Tensor:
    """(patch_px, patch_px) separable 2-D Hann window of an interior patch."""
    ramp = hann_ramp(patch_px)
    return torch.outer(ramp, ramp)


def patch_starts(length: int, patch_px: int, stride_px: int) -> list[int]:
    """Starts at multiples of the stride, plus one flush with the end; covers [0, length)."""
    if length <= patch_px:
        return [0]
    starts = list(range(0, length - patch_px + 1, stride_px))
    if starts[-1] != length - patch_px:
        starts.append(length - patch_px)
    return starts


@torch.inference_mode()
def generate_window(
    generator: torch.nn.Module,
    window: torch.Tensor,
    params: BlendParams,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Normalised (stain, h, w) in [-1, 1] -> (3, h, w) in [-1, 1], patch by patch, blended.

    A window smaller than a patch is reflection-padded (edge-padded when too small to reflect).
    """
    if device is None:
        first = next(generator.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    _, h, w = window.shape
    p = params.patch_px
    if p % 4:
        raise SlideInputError(f"patch_px must be a multiple of 4, got {p}.")
    ph, pw = max(h, p), max(w, p)
    x = window.unsqueeze(0)
    if (ph, pw) != (h, w):
        mode = "reflect" if ph - h < h and pw - w < w else "replicate"
        x = F.pad(x, (0, pw - w, 0, ph - h), mode=mode)
    x = x[0]
    out = torch.zeros(3, ph, pw, device=device)
    total = torch.zeros(ph, pw, device=device)
    ys, xs = patch_starts(ph, p, params.stride_px), patch_starts(pw, p, params.stride_px)
    boxes = [(y, xx) for y in ys for xx in xs]

    def ramp(start: int, length: int) -> torch.Tensor:
        if not params.blend:
            return torch.ones(p)
        return hann_ramp(p, flat_start=start == 0, flat_end=start + p == length)

    for k in range(0, len(boxes), params.batch_size):
        chunk = boxes[k : k + params.batch_size]
        batch = torch.stack([x[:, y : y + p, xx : xx + p] for y, xx in chunk]).to(device)
        pred = generator(batch).float()
        for (y, xx), rgb in zip(chunk, pred, strict=True):
            weights = torch.outer(ramp(y, ph), ramp(xx, pw)).to(device)
            out[:, y : y + p, xx : xx + p] += rgb * weights
            total[y : y + p, xx : xx + p] += weights
    return (out / total)[:, :h, :w].cpu()


def to_uint8_rgb(rgb: torch.Tensor) -> np.ndarray:
    """(3, h, w) in [-1, 1] -> (h, w, 3) uint8."""
    scaled = ((rgb.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(scaled.permute(1, 2, 0).numpy())


def seam_ratio(rgb: np.ndarray, period_px: int, reach_px: int = 2) -> float:
    """Tile seams: the mean |step| between neighbouring pixels across the lines x, y = k *
    period_px, divided by the mean |step| over the `reach_px` steps on either side of them.

    About 1 where the image runs smoothly across the lines, far above 1 where tiles show.
    Comparing with the steps right beside each line (not the whole image) keeps texture and
    slow shading from counting as seams.
    """
    img = np.asarray(rgb, dtype=np.float64)
    across, beside = [], []
    for axis in (0, 1):
        steps = np.abs(np.diff(img, axis=axis))
        steps = steps.mean(axis=tuple(a for a in range(steps.ndim) if a != axis))
        lines = np.arange(period_px - 1, steps.size, period_px)
        lines = lines[(lines >= reach_px) & (lines < steps.size - reach_px)]
        across.append(steps[lines])
        near = [lines + d for d in range(-reach_px, reach_px + 1) if d != 0]
        beside.append(steps[np.concatenate(near)])
    inner = np.concatenate(beside).mean()
    return float(np.concatenate(across).mean() / max(inner, 1e-12))


class CycleGanBackend(VirtualHEBackend):
    """Virtual H&E from a trained MxIF -> H&E generator (see the module docstring for blending)."""

    name = "cyclegan"

    def __init__(
        self,
        generator: ResnetGenerator,
        info: CycleGanInfo,
        normalisation: StainNormalisation,
        *,
        blend: BlendParams | None = None,
        device: torch.device | None = None,
        source: str = "checkpoint",
        slide_id: str | None = None,
    ) -> None:
        self.generator = generator.eval()
        self.info, self.normalisation = info, normalisation
        self.blend = blend or BlendParams()
        self.device = device or next(generator.parameters()).device
        self.source, self.slide_id = source, slide_id
        self.halo_px = self.blend.patch_px
        #: Tile sizes that are multiples of this give output identical to whole-slide rendering.
        self.tile_multiple_px = self.blend.stride_px

    @property
    def stains(self) -> tuple[str, ...]:
        return self.info.stains

    def check_stains(self, available: Iterable[str], *, source: str) -> None:
        """StainError naming the stains the checkpoint needs that the slide lacks (and the
        slide's stains the checkpoint does not know, which are ignored when nothing is missing)."""
        available = [canonical_stain(s) for s in available]
        missing = [s for s in self.stains if s not in available]
        if missing:
            extra = [s for s in available if s not in self.stains]
            raise StainError(
                f"{source}: the CycleGAN checkpoint {self.source} was trained on "
                f"{len(self.stains)} stains; missing from the slide: {', '.join(missing)}"
                + (f"; on the slide but unknown to the checkpoint: {', '.join(extra)}"
                   if extra else "")
                + ". Train a CycleGAN on slides with these stains, or render this slide with "
                "the beer-lambert backend."
            )

    def calibrate(self, sample: np.ndarray, slide_id: str) -> CycleGanBackend:
        """The same generator with this slide's percentile normalisation (as in training)."""
        normalisation = StainNormalisation.from_sample(
            sample, self.stains, self.info.norm_low_percentile, self.info.norm_high_percentile
        )
        return CycleGanBackend(
            self.generator, self.info, normalisation, blend=self.blend, device=self.device,
            source=self.source, slide_id=slide_id,
        )

    def render(self, window: np.ndarray, stains: Sequence[str], mpp: float) -> np.ndarray:
        raw = self.select(window, [canonical_stain(s) for s in stains])
        x = self.normalisation.apply(raw)
        _, h, w = x.shape
        scale = float(mpp) / float(self.info.mpp)
        resample = abs(scale - 1.0) > 0.02
        if resample:  # bring the window to the pixel size the generator was trained at
            size = (max(4, round(h * scale)), max(4, round(w * scale)))
            x = F.interpolate(x[None], size=size, mode="bilinear", antialias=scale < 1,
                              align_corners=False)[0]
        rgb = generate_window(self.generator, x, self.blend, self.device)
        if resample:
            rgb = F.interpolate(rgb[None], size=(h, w), mode="bilinear", antialias=scale > 1,
                                align_corners=False)[0]
        return to_uint8_rgb(rgb)

    def params(self) -> dict[str, Any]:
        return {
            "checkpoint": self.source,
            "step": self.info.step,
            "stains": list(self.stains),
            "train_mpp": self.info.mpp,
            "architecture": dict(self.info.architecture),
            "patch_px": self.blend.patch_px,
            "stride_px": self.blend.stride_px,
            "blend": "hann" if self.blend.blend else "none",
            "norm_method": self.info.norm_method,
            "norm_percentiles": [self.info.norm_low_percentile, self.info.norm_high_percentile],
        }


def generator_from_info(info: CycleGanInfo) -> ResnetGenerator:
    arch = info.architecture
    return ResnetGenerator(
        int(arch["n_stains"]), int(arch.get("rgb_planes", 3)), int(arch["ngf"]),
        int(arch["n_blocks"]),
    )


def load_backend(
    checkpoint_dir: Path,
    device: str | None = None,
    blend: BlendParams | None = None,
) -> CycleGanBackend:
    """The MxIF -> H&E generator of a CycleGAN checkpoint (storage/checkpoints.py) as a backend.

    `device` defaults to CUDA, then MPS, then CPU. Until `calibrate` is called the backend uses
    the normalisation pooled over the training slides.
    """
    torch_device = select_device(device)
    states, info = load_cyclegan_checkpoint(checkpoint_dir, parts=[GENERATOR_PART])
    generator = generator_from_info(info)
    generator.load_state_dict(states[GENERATOR_PART])
    generator.to(torch_device)
    normalisation = StainNormalisation(info.stains, np.array(info.norm_low),
                                       np.array(info.norm_high))
    return CycleGanBackend(generator, info, normalisation, blend=blend, device=torch_device,
                           source=str(checkpoint_dir))
