"""Blended CycleGAN inference: no tile seams, tiling-independent output, checkpoint round trip,
clear errors for a checkpoint trained on other stains."""

import numpy as np
import pytest
import torch

from pipelines.errors import StainError
from pipelines.vhe.cyclegan.data import StainNormalisation
from pipelines.vhe.cyclegan.infer import (
    GENERATOR_PART,
    BlendParams,
    CycleGanBackend,
    generate_window,
    hann_weights,
    load_backend,
    patch_starts,
    seam_ratio,
    to_uint8_rgb,
)
from pipelines.vhe.cyclegan.model import Architecture, ResnetGenerator, init_weights
from storage.checkpoints import CycleGanInfo, save_cyclegan_checkpoint
from storage.tiles import tile_grid

STAINS = ("DAPI", "PanCK", "CD3d")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _generator(seed: int = 0, n_stains: int = 3) -> ResnetGenerator:
    torch.manual_seed(seed)
    g = ResnetGenerator(n_stains, 3, ngf=4, n_blocks=1)
    init_weights(g, gain=0.3)  # strong weights: instance norm makes every patch differ visibly
    return g.eval()


def _info(mpp: float = 0.32) -> CycleGanInfo:
    arch = Architecture(n_stains=3, ngf=4, n_blocks=1).to_json()
    return CycleGanInfo(STAINS, (0.0, 0.0, 0.0), (1000.0, 1000.0, 1000.0), mpp, arch, step=5)


def _backend(patch_px: int = 32, blend: bool = True, seed: int = 0) -> CycleGanBackend:
    info = _info()
    norm = StainNormalisation(STAINS, np.array(info.norm_low), np.array(info.norm_high))
    return CycleGanBackend(_generator(seed), info, norm,
                           blend=BlendParams(patch_px=patch_px, batch_size=8, blend=blend))


def _slide(h: int = 150, w: int = 170, seed: int = 1) -> np.ndarray:
    """Raw intensities 0..1000 with structure (blobs) and texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    planes = []
    for _ in STAINS:
        plane = rng.random((h, w)) * 200
        for _ in range(30):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            plane += 800 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20.0)
        planes.append(plane.clip(0, 1000))
    return np.stack(planes).astype(np.float32)


def _render_tiled(backend: CycleGanBackend, raw: np.ndarray, tile_px: int) -> np.ndarray:
    """What the streaming layer does: windows with `halo_px`, keep each core."""
    _, h, w = raw.shape
    out = np.zeros((h, w, 3), np.uint8)
    for t in tile_grid(h, w, tile_px, backend.halo_px):
        window = raw[:, t.read_y0 : t.read_y1, t.read_x0 : t.read_x1]
        out[t.y0 : t.y1, t.x0 : t.x1] = backend.render(window, STAINS, 0.32)[t.core_in_window]
    return out


def test_patch_grid_is_aligned_to_the_stride_and_covers_the_window():
    assert patch_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert patch_starts(96, 32, 16) == [0, 16, 32, 48, 64]
    assert patch_starts(20, 32, 16) == [0]


def test_hann_weights_at_half_overlap_sum_to_one_inside():
    w = hann_weights(32)
    assert w.shape == (32, 32)
    assert float(w.max()) == pytest.approx(1.0) and float(w.min()) == 0.0
    total = torch.zeros(96, 96)
    for y in range(0, 65, 16):
        for x in range(0, 65, 16):
            total[y : y + 32, x : x + 32] += w
    assert torch.allclose(total[16:80, 16:80], torch.ones(64, 64), atol=1e-5)


def test_blending_a_pointwise_model_reproduces_it_exactly():
    torch.manual_seed(0)
    pointwise = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.Tanh()).eval()
    x = torch.rand(3, 75, 90) * 2 - 1
    blended = generate_window(pointwise, x, BlendParams(patch_px=32))
    with torch.no_grad():
        whole = pointwise(x[None])[0]
    assert torch.allclose(blended, whole, atol=1e-6)
    constant = generate_window(pointwise, torch.zeros(3, 40, 40), BlendParams(patch_px=32))
    assert float(constant.std(dim=(1, 2)).max()) < 1e-6  # constant in, constant out


def test_tiled_rendering_equals_whole_slide_rendering():
    backend = _backend(patch_px=32)
    raw = _slide()
    whole = backend.render(raw, STAINS, 0.32)
    tiled = _render_tiled(backend, raw, tile_px=48)  # a multiple of the 16-px stride
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.99


def _instance_norm_model() -> torch.nn.Module:
    """Identity up to per-patch instance normalisation: the source of seams in a generator."""
    return torch.nn.Sequential(torch.nn.InstanceNorm2d(3), torch.nn.Tanh()).eval()


def test_blending_removes_the_seams_of_naive_tiling():
    yy, xx = torch.meshgrid(torch.arange(160.0), torch.arange(192.0), indexing="ij")
    ramp = torch.stack([torch.sin(yy / 40 + k) * torch.cos(xx / 50 - k) for k in range(3)])
    model = _instance_norm_model()
    naive = to_uint8_rgb(generate_window(model, ramp, BlendParams(patch_px=32, blend=False)))
    blended = to_uint8_rgb(generate_window(model, ramp, BlendParams(patch_px=32)))
    naive_ratio, blended_ratio = seam_ratio(naive, 32), seam_ratio(blended, 32)
    assert naive_ratio > 5.0, naive_ratio  # patch-wise normalisation jumps at every border
    assert blended_ratio < 1.5, blended_ratio
    # The same model on a whole window and tile by tile (halo = patch) agrees exactly.
    whole = generate_window(model, ramp, BlendParams(patch_px=32))
    tiled = torch.zeros_like(whole)
    for t in tile_grid(160, 192, 64, 32):
        window = ramp[:, t.read_y0 : t.read_y1, t.read_x0 : t.read_x1]
        rgb = generate_window(model, window, BlendParams(patch_px=32))
        tiled[:, t.y0 : t.y1, t.x0 : t.x1] = rgb[(slice(None), *t.core_in_window)]
    assert torch.allclose(whole, tiled, atol=1e-5)


def test_checkpoint_round_trip_gives_identical_virtual_he(tmp_path):
    backend = _backend(patch_px=32)
    save_cyclegan_checkpoint(tmp_path / "cyclegan",
                             {GENERATOR_PART: backend.generator.state_dict()}, backend.info)
    loaded = load_backend(tmp_path / "cyclegan", device="cpu",
                          blend=BlendParams(patch_px=32, batch_size=8))
    assert loaded.name == "cyclegan" and loaded.halo_px == 32 and loaded.tile_multiple_px == 16
    assert loaded.stains == STAINS
    raw = _slide(70, 90)
    assert np.array_equal(loaded.render(raw, STAINS, 0.32), backend.render(raw, STAINS, 0.32))
    assert loaded.params()["step"] == 5


def test_a_checkpoint_for_other_stains_names_the_missing_and_extra_ones():
    backend = _backend()
    slide_stains = ["DAPI", "CD8", "Ki67"]
    with pytest.raises(StainError) as err:
        backend.check_stains(slide_stains, source="slide S1")
    message = str(err.value)
    assert "slide S1" in message
    assert "missing from the slide: PanCK, CD3d" in message
    assert "unknown to the checkpoint: CD8, Ki67" in message
    with pytest.raises(StainError, match="PanCK"):
        backend.render(np.zeros((3, 40, 40), np.float32), slide_stains, 0.32)


def test_extra_stains_and_another_order_give_the_same_rendering():
    backend = _backend()
    raw = _slide(64, 64)
    reordered = np.concatenate([raw[[2, 0, 1]], np.full((1, 64, 64), 5.0, np.float32)])
    assert np.array_equal(
        backend.render(reordered, ["CD3 D", "dapi", "PanCK", "Ki67"], 0.32),  # aliases too
        backend.render(raw, STAINS, 0.32),
    )


def test_calibration_makes_rendering_independent_of_slide_brightness():
    backend = _backend()
    raw = _slide(64, 64)
    rng = np.random.default_rng(0)
    sample = raw.reshape(3, -1)[:, rng.choice(64 * 64, 2000, replace=False)]
    dim = backend.calibrate(sample, "dim").render(raw, STAINS, 0.32)
    bright = backend.calibrate(sample * 3.0, "bright").render(raw * 3.0, STAINS, 0.32)
    assert np.abs(dim.astype(int) - bright.astype(int)).max() <= 1


def test_windows_at_another_pixel_size_are_resampled_to_the_training_one():
    backend = _backend()
    constant = np.full((3, 50, 60), 500.0, np.float32)
    out = backend.render(constant, STAINS, 0.5)
    assert out.shape == (50, 60, 3)
    assert np.ptp(out.reshape(-1, 3), axis=0).max() <= 1  # still constant
    same = backend.render(constant, STAINS, 0.32)
    assert np.abs(out[25, 30].astype(int) - same[25, 30].astype(int)).max() <= 1
