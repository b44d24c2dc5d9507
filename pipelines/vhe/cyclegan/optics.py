"""Fixed, differentiable colour projections between RGB H&E and the MxIF stain space.

They hold no learned weights. Two uses in training:
- `hematoxylin`: RGB -> optical density -> hematoxylin amount (Ruifrok & Johnston colour
  deconvolution), for the nucleus-preserving term that ties the virtual H&E's hematoxylin to the
  nuclear stain, so nuclei stay where the MxIF has them.
- `he_to_stain_space`: lifts a real H&E image into the generator's stain space (nuclear stain <-
  hematoxylin, every other stain <- eosin), for the identity term on the H&E -> H&E path.

Images are tensors in [-1, 1] shaped (batch, planes, h, w), like the networks' inputs and outputs.
Optical densities use the natural logarithm: OD = -ln(I / I0), with I clamped at 1/255 of I0.
"""

from __future__ import annotations

import torch

# Rows: optical density of one unit of hematoxylin, eosin and a residual ("DAB") direction,
# each normalised to unit length (Ruifrok & Johnston 2001; the values scikit-image uses).
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)

#: Optical densities that map to a full-scale (1.0) stain plane when lifting H&E to stain space.
HEMATOXYLIN_FULL_OD = 1.5
EOSIN_FULL_OD = 1.0
_MIN_INTENSITY = 1.0 / 255.0


def optical_density(rgb: torch.Tensor) -> torch.Tensor:
    """(b, 3, h, w) RGB in [-1, 1] -> optical density per RGB plane, >= 0."""
    intensity = ((rgb + 1.0) * 0.5).clamp(min=_MIN_INTENSITY, max=1.0)
    return -torch.log(intensity)


def stain_amounts(rgb: torch.Tensor) -> torch.Tensor:
    """(b, 3, h, w) RGB in [-1, 1] -> (b, 3, h, w) hematoxylin, eosin and residual amounts (OD)."""
    od = optical_density(rgb)
    matrix = HED_FROM_RGB.to(dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("bchw,cd->bdhw", od, matrix)


def hematoxylin(rgb: torch.Tensor) -> torch.Tensor:
    """(b, 1, h, w) hematoxylin amount in optical-density units."""
    return stain_amounts(rgb)[:, :1]


def he_to_stain_space(rgb: torch.Tensor, n_stains: int, nuclear_index: int) -> torch.Tensor:
    """A real H&E image as an MxIF-like stain image in [-1, 1] (b, n_stains, h, w).

    The nuclear stain plane carries hematoxylin, every other plane eosin, each scaled so that
    `HEMATOXYLIN_FULL_OD` / `EOSIN_FULL_OD` give the top of the range.
    """
    amounts = stain_amounts(rgb)
    nuclear = (amounts[:, 0:1] / HEMATOXYLIN_FULL_OD).clamp(0.0, 1.0) * 2.0 - 1.0
    other = (amounts[:, 1:2] / EOSIN_FULL_OD).clamp(0.0, 1.0) * 2.0 - 1.0
    planes = other.expand(-1, n_stains, -1, -1).clone()
    planes[:, nuclear_index : nuclear_index + 1] = nuclear
    return planes


def standardise(maps: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Zero mean, unit standard deviation per image, so a comparison sees where, not how much."""
    flat = maps.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1).view(-1, 1, 1, 1)
    return (maps - mean) / (std + eps)


def nucleus_preservation_loss(fake_he: torch.Tensor, nuclear_stain: torch.Tensor) -> torch.Tensor:
    """Mean |z(hematoxylin of the virtual H&E) - z(nuclear stain)|, z = per-image standardisation.

    Zero when hematoxylin is an increasing affine function of the nuclear stain, large when
    nuclei appear where the nuclear stain has none (or vanish where it has them).
    """
    return (standardise(hematoxylin(fake_he)) - standardise(nuclear_stain)).abs().mean()
