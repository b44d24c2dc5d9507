"""CycleGAN inference: blended sliding windows (ours) against naive abutting tiles (the peer).

Prints megapixels per second and the seam ratio (mean |step| across tile borders over the mean
|step| right beside them: about 1 without seams) for both, and their ratios. Run with
`python -m pytest tests/benchmarks/test_bench_cyclegan.py -s`.
"""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dagster_project.resources import default_data_root
from pipelines.vhe.cyclegan.infer import (
    BlendParams,
    generate_window,
    load_backend,
    seam_ratio,
    to_uint8_rgb,
)
from pipelines.vhe.cyclegan.model import ResnetGenerator, init_weights
from storage.checkpoints import checkpoint_exists
from storage.tiles import tile_grid

N_STAINS = 27


def _tissue(size: int, seed: int = 0) -> torch.Tensor:
    """(27, size, size) in [-1, 1]: round nuclei, smooth cytoplasm and stroma fields, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    nuclei = np.zeros((size, size), np.float32)
    for cy, cx in rng.uniform(0, size, (size * size // 400, 2)):
        nuclei += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
    planes = [nuclei.clip(0, 1)]
    for k in range(N_STAINS - 1):
        field = 0.5 + 0.5 * np.sin(yy / (20 + k) + k) * np.cos(xx / (27 + k) - k)
        planes.append(field * rng.uniform(0.2, 1.0) + rng.normal(0, 0.03, (size, size)))
    return torch.from_numpy(np.stack(planes).clip(0, 1) * 2 - 1).float()


def _generator(ngf: int, n_blocks: int) -> torch.nn.Module:
    torch.manual_seed(0)
    g = ResnetGenerator(N_STAINS, 3, ngf=ngf, n_blocks=n_blocks)
    init_weights(g)
    return g.eval()


def _timed(model, x, params) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    rgb = to_uint8_rgb(generate_window(model, x, params))
    return rgb, time.perf_counter() - start


def _compare(label: str, model, x, patch_px: int) -> None:
    mp = x.shape[1] * x.shape[2] / 1e6
    naive, t_naive = _timed(model, x, BlendParams(patch_px=patch_px, blend=False))
    blended, t_blend = _timed(model, x, BlendParams(patch_px=patch_px))
    s_naive, s_blend = seam_ratio(naive, patch_px), seam_ratio(blended, patch_px)
    print(f"\n{label}: {x.shape[1]}x{x.shape[2]} px, patch {patch_px}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"  naive tiles : {mp / t_naive:8.3f} MP/s  seam ratio {s_naive:6.2f}")
    print(f"  blended     : {mp / t_blend:8.3f} MP/s  seam ratio {s_blend:6.2f}")
    print(f"  blended/naive speed {t_naive / t_blend:.2f}x, seam ratio naive/blended "
          f"{s_naive / s_blend:.2f}x")
    assert s_blend < s_naive


def test_bench_identity_like_instance_norm_model():
    """Seams in their purest form: identity up to per-patch instance normalisation."""
    model = torch.nn.Sequential(torch.nn.Conv2d(N_STAINS, 3, 1), torch.nn.InstanceNorm2d(3),
                                torch.nn.Tanh()).eval()
    _compare("identity-like instance-norm model", model, _tissue(1024), 256)


def test_bench_demo_generator():
    _compare("demo generator (ngf 8, 3 blocks)", _generator(8, 3), _tissue(1024), 256)


def test_bench_paper_generator():
    _compare("paper generator (ngf 64, 9 blocks)", _generator(64, 9), _tissue(512), 256)


def test_bench_trained_generator():
    """A trained generator (smooth H&E-like output, where seams would show): the checkpoint at
    $CYCLEGAN_CHECKPOINT or data/models/cyclegan, e.g. after the demo profile."""
    folder = Path(os.environ.get("CYCLEGAN_CHECKPOINT", Path(default_data_root()) / "models"
                                 / "cyclegan"))
    if not checkpoint_exists(folder):
        pytest.skip(f"no trained CycleGAN checkpoint at {folder}")
    backend = load_backend(folder, device="cpu")
    if len(backend.stains) != N_STAINS:
        pytest.skip(f"checkpoint at {folder} has {len(backend.stains)} stains")
    _compare(f"trained generator {dict(backend.info.architecture)} step {backend.info.step}",
             backend.generator, _tissue(768), 256)


def test_bench_streamed_tiles_equal_the_whole_window():
    """What the halo costs and buys: tile_px 512 with halo 256 against one whole window."""
    model, x = _generator(8, 3), _tissue(1024, seed=1)
    params = BlendParams(patch_px=256)
    whole, t_whole = _timed(model, x, params)
    start = time.perf_counter()
    tiled = np.zeros_like(whole)
    for t in tile_grid(1024, 1024, 512, 256):
        rgb = to_uint8_rgb(generate_window(model, x[:, t.read_y0 : t.read_y1,
                                                 t.read_x0 : t.read_x1], params))
        tiled[t.y0 : t.y1, t.x0 : t.x1] = rgb[t.core_in_window]
    t_tiled = time.perf_counter() - start
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    print(f"\nstreamed 512-px tiles + 256-px halo vs whole 1024-px window: "
          f"{1.048576 / t_tiled:.3f} vs {1.048576 / t_whole:.3f} MP/s "
          f"({t_tiled / t_whole:.2f}x the time); max |diff| {diff.max()}, "
          f"seam ratio at 512 px {seam_ratio(tiled, 512):.2f}")
    assert diff.max() <= 1
