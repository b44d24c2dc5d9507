"""CycleGAN networks and the fixed colour projections: ranges, receptive field, determinism."""

import math

import pytest
import torch

from pipelines.torch_device import select_device
from pipelines.vhe.cyclegan import optics
from pipelines.vhe.cyclegan.model import (
    Architecture,
    PatchDiscriminator,
    ResnetGenerator,
    build_networks,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_generator_maps_stains_to_rgb_in_the_tanh_range():
    torch.manual_seed(0)
    g = ResnetGenerator(27, 3, ngf=8, n_blocks=2)
    x = torch.rand(2, 27, 48, 64) * 2 - 1
    y = g(x)
    assert y.shape == (2, 3, 48, 64)
    assert y.min() > -1.0 and y.max() < 1.0
    assert y.std() > 1e-3  # not collapsed to a constant
    assert not torch.allclose(y[0], y[1])  # depends on its input
    back = ResnetGenerator(3, 27, ngf=8, n_blocks=2)(y)
    assert back.shape == (2, 27, 48, 64)


def test_patch_discriminator_has_a_70_pixel_receptive_field():
    torch.manual_seed(0)
    d = PatchDiscriminator(3, ndf=8, n_layers=3)
    # Instance norm spreads image-wide statistics; the convolutions alone define the field.
    for i, layer in enumerate(d.net):
        if isinstance(layer, torch.nn.InstanceNorm2d):
            d.net[i] = torch.nn.Identity()
    x = torch.randn(1, 3, 160, 160, requires_grad=True)
    out = d(x)
    assert out.shape == (1, 1, 18, 18)
    out[0, 0, 9, 9].backward()
    touched = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(touched.any(dim=1)).flatten()
    cols = torch.nonzero(touched.any(dim=0)).flatten()
    assert int(rows.max() - rows.min() + 1) == 70
    assert int(cols.max() - cols.min() + 1) == 70


def test_same_seed_same_weights():
    arch = Architecture(n_stains=5, ngf=4, ndf=4, n_blocks=1)
    a, b = build_networks(arch, seed=1), build_networks(arch, seed=1)
    c = build_networks(arch, seed=2)
    wa = a.generator_mxif_to_he.state_dict()
    assert all(torch.equal(v, b.generator_mxif_to_he.state_dict()[k]) for k, v in wa.items())
    assert not torch.equal(wa["net.1.weight"], c.generator_mxif_to_he.state_dict()["net.1.weight"])
    assert abs(float(wa["net.1.weight"].std()) - 0.02) < 0.005  # N(0, 0.02) initialisation


def test_device_is_chosen_cuda_then_mps_then_cpu(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(None) == torch.device("cuda")


def _rgb_from_amounts(h: float, e: float) -> torch.Tensor:
    od = h * optics.RGB_FROM_HED[0] + e * optics.RGB_FROM_HED[1]
    intensity = torch.exp(-od).float()
    return (intensity * 2 - 1).view(1, 3, 1, 1)


def test_colour_deconvolution_recovers_stain_amounts():
    amounts = optics.stain_amounts(_rgb_from_amounts(0.8, 0.3))
    assert amounts[0, 0].item() == pytest.approx(0.8, abs=1e-4)
    assert amounts[0, 1].item() == pytest.approx(0.3, abs=1e-4)
    assert amounts[0, 2].item() == pytest.approx(0.0, abs=1e-4)
    white = torch.ones(1, 3, 1, 1)
    assert optics.hematoxylin(white).item() == pytest.approx(0.0, abs=1e-6)


def test_he_lifted_to_stain_space_puts_hematoxylin_in_the_nuclear_stain():
    rgb = _rgb_from_amounts(0.75, 0.5)  # half of full-scale H, half of full-scale E
    lifted = optics.he_to_stain_space(rgb, n_stains=4, nuclear_index=2)
    assert lifted.shape == (1, 4, 1, 1)
    assert lifted[0, 2].item() == pytest.approx(0.75 / optics.HEMATOXYLIN_FULL_OD * 2 - 1, abs=1e-3)
    for k in (0, 1, 3):
        assert lifted[0, k].item() == pytest.approx(0.5 / optics.EOSIN_FULL_OD * 2 - 1, abs=1e-3)


def test_nucleus_term_is_zero_for_aligned_nuclei_and_large_for_moved_ones():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blob = torch.exp(-((yy - 10) ** 2 + (xx - 12) ** 2) / 8.0)
    moved = torch.exp(-((yy - 22) ** 2 + (xx - 20) ** 2) / 8.0)
    nuclear = (blob * 2 - 1).view(1, 1, 32, 32)
    he_aligned = torch.cat([_rgb_from_amounts(1.2 * float(v), 0.2) for v in blob.flatten()])
    he_aligned = he_aligned.view(32, 32, 3).permute(2, 0, 1)[None]
    he_moved = torch.cat([_rgb_from_amounts(1.2 * float(v), 0.2) for v in moved.flatten()])
    he_moved = he_moved.view(32, 32, 3).permute(2, 0, 1)[None]
    aligned = optics.nucleus_preservation_loss(he_aligned, nuclear).item()
    shifted = optics.nucleus_preservation_loss(he_moved, nuclear).item()
    assert aligned < 0.01
    assert shifted > 0.3
    assert math.isfinite(optics.nucleus_preservation_loss(torch.zeros(1, 3, 8, 8),
                                                          torch.zeros(1, 1, 8, 8)).item())
