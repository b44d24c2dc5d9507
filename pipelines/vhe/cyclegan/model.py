"""CycleGAN networks (Zhu et al. 2017): ResNet generators and 70x70 PatchGAN discriminators.

Generator: reflection pad, 7x7 conv, two stride-2 downsampling convs, `n_blocks` residual blocks
(reflection padding, instance norm), two transposed-conv upsamplings, 7x7 conv, tanh. Inputs and
outputs are in [-1, 1]; height and width must be multiples of 4. Discriminator: 4x4 convs with
instance norm and leaky ReLU, `n_layers=3` gives each output a 70x70 pixel receptive field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Network sizes; stored in the checkpoint so a model is rebuilt exactly."""

    n_stains: int
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_disc_layers: int = 3
    rgb_planes: int = 3

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ResnetBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, 3, bias=True),
            nn.InstanceNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, 3, bias=True),
            nn.InstanceNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Maps (batch, in_planes, h, w) in [-1, 1] to (batch, out_planes, h, w) in [-1, 1]."""

    def __init__(self, in_planes: int, out_planes: int, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_planes, ngf, 7, bias=True),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(inplace=True),
        ]
        width = ngf
        for _ in range(2):
            layers += [
                nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=True),
                nn.InstanceNorm2d(width * 2),
                nn.ReLU(inplace=True),
            ]
            width *= 2
        layers += [ResnetBlock(width) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1,
                                   bias=True),
                nn.InstanceNorm2d(width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_planes, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: one real/fake score per overlapping 70x70 patch (for `n_layers=3`)."""

    def __init__(self, in_planes: int, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_planes, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=True),
                nn.InstanceNorm2d(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = out
        layers += [nn.Conv2d(width, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Normal(0, 0.02) conv weights and zero biases, as in the CycleGAN reference code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass
class CycleGanNetworks:
    """The four networks: G (MxIF -> H&E), F (H&E -> MxIF) and a discriminator per domain."""

    generator_mxif_to_he: ResnetGenerator
    generator_he_to_mxif: ResnetGenerator
    discriminator_he: PatchDiscriminator
    discriminator_mxif: PatchDiscriminator

    def modules(self) -> dict[str, nn.Module]:
        return {
            "generator_mxif_to_he": self.generator_mxif_to_he,
            "generator_he_to_mxif": self.generator_he_to_mxif,
            "discriminator_he": self.discriminator_he,
            "discriminator_mxif": self.discriminator_mxif,
        }

    def to(self, device: torch.device) -> CycleGanNetworks:
        for m in self.modules().values():
            m.to(device)
        return self


def build_networks(arch: Architecture, *, seed: int = 0) -> CycleGanNetworks:
    """Freshly initialised networks; the same seed gives the same weights."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        nets = CycleGanNetworks(
            ResnetGenerator(arch.n_stains, arch.rgb_planes, arch.ngf, arch.n_blocks),
            ResnetGenerator(arch.rgb_planes, arch.n_stains, arch.ngf, arch.n_blocks),
            PatchDiscriminator(arch.rgb_planes, arch.ndf, arch.n_disc_layers),
            PatchDiscriminator(arch.n_stains, arch.ndf, arch.n_disc_layers),
        )
        for m in nets.modules().values():
            init_weights(m)
    return nets
