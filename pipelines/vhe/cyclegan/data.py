"""Unpaired training data: random MxIF crops from slide stores, random crops of real H&E tiles.

MxIF intensities become generator inputs through a per-slide percentile clip,
x' = 2 * clip((x - low) / (high - low), 0, 1) - 1 per stain, with `low` and `high` taken from a
pixel sample of the slide, which is what rendering does too (`CycleGanBackend.calibrate`), so a
slide imaged brighter than another gives the same virtual H&E. H&E crops map 0..255 to [-1, 1].
Both domains get random flips and quarter turns (tissue has no preferred orientation).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.errors import ConfigurationError, StainError


class SlideWindows(Protocol):
    """What the samplers need from a slide (storage.slide_store.SlideReader fits)."""

    @property
    def info(self): ...  # slide_id, stains, mpp, height_px, width_px

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray: ...


class HeTiles(Protocol):
    """What the H&E sampler needs (storage.he_tiles.HeTileFolder fits)."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class StainNormalisation:
    """Per-stain `low`/`high` raw intensities that map to -1 and +1."""

    stains: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float32)
        high = np.asarray(self.high, dtype=np.float32)
        if low.shape != (len(self.stains),) or high.shape != low.shape:
            raise ConfigurationError(
                f"Normalisation for {len(self.stains)} stains got {low.shape} / {high.shape} "
                "values."
            )
        # A stain that is flat on a slide still needs a positive range.
        high = np.maximum(high, low + np.maximum(1e-6, np.abs(low) * 1e-3))
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def from_sample(
        cls,
        sample: np.ndarray,
        stains: Sequence[str],
        low_percentile: float = 1.0,
        high_percentile: float = 99.9,
    ) -> StainNormalisation:
        """Fit to a (stain, n) pixel sample in `stains` order."""
        sample = np.asarray(sample, dtype=np.float32)
        if sample.ndim != 2 or sample.shape[0] != len(stains) or sample.shape[1] == 0:
            raise ConfigurationError(
                f"A normalisation sample must be (stain, n) with {len(stains)} stains and n > 0; "
                f"got {sample.shape}."
            )
        low, high = np.percentile(sample, [low_percentile, high_percentile], axis=1)
        return cls(tuple(stains), low, high)

    def apply(self, window: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw (stain, h, w) or (b, stain, h, w) intensities -> float32 tensor in [-1, 1]."""
        x = torch.as_tensor(np.asarray(window, dtype=np.float32))
        shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
        low = torch.from_numpy(self.low).view(shape)
        span = torch.from_numpy(self.high - self.low).view(shape)
        return ((x - low) / span).clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)


def read_stains(
    slide: SlideWindows, y0: int, x0: int, y1: int, x1: int, stains: Sequence[str]
) -> np.ndarray:
    """A (stain, h, w) window in `stains` order, read in one call (all stains at once)."""
    have = tuple(slide.info.stains)
    block = slide.read(y0, x0, y1, x1)
    if have == tuple(stains):
        return block
    return block[[have.index(s) for s in stains]]


def slide_pixel_sample(
    slide: SlideWindows,
    stains: Sequence[str],
    rng: np.random.Generator,
    n_pixels: int = 65_536,
    window_px: int = 128,
    n_windows: int = 8,
) -> np.ndarray:
    """A (stain, n) sample of pixels from `n_windows` random windows spread over the slide."""
    h, w = slide.info.height_px, slide.info.width_px
    wy, wx = min(window_px, h), min(window_px, w)
    blocks = []
    for _ in range(n_windows):
        y0 = int(rng.integers(0, h - wy + 1))
        x0 = int(rng.integers(0, w - wx + 1))
        block = read_stains(slide, y0, x0, y0 + wy, x0 + wx, stains)
        blocks.append(block.reshape(len(stains), -1))
    pixels = np.concatenate(blocks, axis=1)
    if pixels.shape[1] > n_pixels:
        pixels = pixels[:, rng.choice(pixels.shape[1], n_pixels, replace=False)]
    return pixels


def training_stains(
    slides: Sequence[SlideWindows], withheld: Collection[str] = ()
) -> tuple[str, ...]:
    """The first slide's stains, in its order, less the `withheld` ones (stains the generator
    must not see); every other slide must have them all."""
    if not slides:
        raise ConfigurationError("CycleGAN training needs at least one ingested slide.")
    stains = tuple(s for s in slides[0].info.stains if s not in set(withheld))
    if not stains:
        raise StainError(
            f"Slide {slides[0].info.slide_id!r} has no stain left for the CycleGAN once "
            f"{sorted(withheld)} are withheld; train with input_stains 'all'.")
    for slide in slides[1:]:
        missing = [s for s in stains if s not in slide.info.stains]
        if missing:
            raise StainError(
                f"Slide {slide.info.slide_id!r} lacks stain(s) {missing} that slide "
                f"{slides[0].info.slide_id!r} has; train on slides with the same stains or "
                "leave that slide out."
            )
    return stains


def _augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random quarter turn and flip of a (planes, h, w) square crop."""
    crop = np.rot90(crop, k=int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        crop = crop[:, :, ::-1]
    return np.ascontiguousarray(crop)


class MxifCropSampler:
    """Random normalised MxIF crops (b, stain, crop_px, crop_px) in [-1, 1].

    Reading a window decodes every Zarr chunk it touches for every stain, so a region of
    `region_px` is read from a random slide at a time and `crops_per_region` crops are cut from it.
    """

    def __init__(
        self,
        slides: Sequence[SlideWindows],
        stains: Sequence[str],
        normalisations: Sequence[StainNormalisation],
        crop_px: int,
        rng: np.random.Generator,
        region_px: int = 512,
        crops_per_region: int = 16,
    ) -> None:
        if len(normalisations) != len(slides):
            raise ConfigurationError("One normalisation per training slide is needed.")
        too_small = [
            s.info.slide_id for s in slides
            if s.info.height_px < crop_px or s.info.width_px < crop_px
        ]
        if too_small:
            raise ConfigurationError(
                f"Slides {too_small} are smaller than the {crop_px}-px training crop; "
                "lower crop_px or leave them out."
            )
        self.slides, self.stains = list(slides), tuple(stains)
        self.normalisations, self.crop_px, self.rng = list(normalisations), crop_px, rng
        self.region_px, self.crops_per_region = max(region_px, crop_px), crops_per_region
        self._region: np.ndarray | None = None
        self._left = 0

    def _next_region(self) -> np.ndarray:
        index = int(self.rng.integers(len(self.slides)))
        slide = self.slides[index]
        rh = min(self.region_px, slide.info.height_px)
        rw = min(self.region_px, slide.info.width_px)
        y0 = int(self.rng.integers(0, slide.info.height_px - rh + 1))
        x0 = int(self.rng.integers(0, slide.info.width_px - rw + 1))
        raw = read_stains(slide, y0, x0, y0 + rh, x0 + rw, self.stains)
        return self.normalisations[index].apply(raw).numpy()

    def sample(self, batch_size: int) -> torch.Tensor:
        crops = []
        for _ in range(batch_size):
            if self._region is None or self._left <= 0:
                self._region, self._left = self._next_region(), self.crops_per_region
            self._left -= 1
            _, rh, rw = self._region.shape
            y0 = int(self.rng.integers(0, rh - self.crop_px + 1))
            x0 = int(self.rng.integers(0, rw - self.crop_px + 1))
            crop = self._region[:, y0 : y0 + self.crop_px, x0 : x0 + self.crop_px]
            crops.append(_augment(crop, self.rng))
        return torch.from_numpy(np.stack(crops))


class HeCropSampler:
    """Random real H&E crops (b, 3, crop_px, crop_px) in [-1, 1].

    With `scale` != 1 (H&E pixel size differs from the MxIF's) a crop of crop_px * scale tile
    pixels is cut and resized to crop_px, so both domains show tissue at the same µm per pixel.
    """

    def __init__(
        self, tiles: HeTiles, crop_px: int, rng: np.random.Generator, scale: float = 1.0
    ) -> None:
        self.tiles, self.crop_px, self.rng = tiles, crop_px, rng
        self.source_px = max(1, round(crop_px * scale))
        self._usable: list[int] | None = None

    def _usable_tiles(self) -> list[int]:
        if self._usable is None:
            self._usable = [
                i for i in range(len(self.tiles))
                if min(self.tiles.read(i).shape[:2]) >= self.source_px
            ]
            if not self._usable:
                raise ConfigurationError(
                    f"No real H&E tile is at least {self.source_px} px on each side; lower "
                    "crop_px or use larger tiles."
                )
        return self._usable

    def sample(self, batch_size: int) -> torch.Tensor:
        usable = self._usable_tiles()
        crops = []
        for _ in range(batch_size):
            tile = self.tiles.read(usable[int(self.rng.integers(len(usable)))])
            h, w = tile.shape[:2]
            y0 = int(self.rng.integers(0, h - self.source_px + 1))
            x0 = int(self.rng.integers(0, w - self.source_px + 1))
            crop = tile[y0 : y0 + self.source_px, x0 : x0 + self.source_px].transpose(2, 0, 1)
            crops.append(_augment(crop.astype(np.float32) / 127.5 - 1.0, self.rng))
        batch = torch.from_numpy(np.stack(crops))
        if self.source_px != self.crop_px:
            batch = F.interpolate(batch, size=(self.crop_px, self.crop_px), mode="bilinear",
                                  antialias=True, align_corners=False).clamp_(-1.0, 1.0)
        return batch
