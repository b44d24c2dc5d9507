"""he-learned targets and post-processing: cores separate touching nuclei, maps give nuclei back."""

import numpy as np
import torch
from scipy import ndimage as ndi

from pipelines.segment.he_unet import (
    INPUT_CHANNELS,
    NucleusUNet,
    PostParams,
    UNetShape,
    labels_from_maps,
    network_input,
    nucleus_targets,
)
from pipelines.segment.instance_f1 import match_instances


def _touching_discs() -> np.ndarray:
    yy, xx = np.mgrid[:40, :60]
    labels = np.zeros((40, 60), np.int32)
    labels[(yy - 20) ** 2 + (xx - 18) ** 2 <= 81] = 1000  # slide-wide ids, not 1..n
    right = (yy - 20) ** 2 + (xx - 34) ** 2 <= 64
    labels[right & (labels == 0)] = 2000
    return labels


def test_targets_give_one_core_per_nucleus_inside_it() -> None:
    labels = _touching_discs()
    targets = nucleus_targets(labels)
    np.testing.assert_array_equal(targets[0], labels > 0)
    core = targets[1] > 0
    _, n = ndi.label(core)
    assert n == 2  # the discs touch, their cores do not
    assert set(np.unique(labels[core])) == {1000, 2000}
    for value in (1000, 2000):
        inside = labels == value
        # The core is the inner half of the radius: about a quarter of the area.
        assert 0.1 < core[inside].mean() < 0.45
    assert nucleus_targets(np.zeros((5, 5), np.int32)).sum() == 0


def test_perfect_maps_give_the_nuclei_back() -> None:
    labels = _touching_discs()
    targets = nucleus_targets(labels)
    found = labels_from_maps(targets[0], targets[1], mpp=0.5)
    assert len(np.unique(found[found > 0])) == 2
    score = match_instances(labels, found, 0.5)
    assert score.tp == 2 and score.mean_iou > 0.9


def test_small_fragments_are_dropped() -> None:
    fg = np.zeros((30, 30), np.float32)
    fg[2:4, 2:4] = 1.0  # 4 px = 1 µm² at 0.5 µm/px, below min_area_um2
    fg[10:20, 10:20] = 1.0
    core = np.zeros_like(fg)
    core[2:4, 2:4] = 1.0
    core[13:17, 13:17] = 1.0
    found = labels_from_maps(fg, core, mpp=0.5, params=PostParams(min_seed_um2=0.5))
    assert len(np.unique(found[found > 0])) == 1 and (found[10:20, 10:20] > 0).all()
    assert labels_from_maps(np.zeros_like(fg), core, mpp=0.5).max() == 0


def test_input_standardises_colours_and_keeps_optical_density() -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[...] = (200, 100, 150)
    rgb[4:8, 4:8] = (60, 30, 90)
    x = network_input(rgb)
    assert x.shape == (INPUT_CHANNELS, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x[:3].mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x[:3].std(axis=(1, 2)), 1.0, atol=1e-4)
    np.testing.assert_allclose(x[3:, 0, 0], -np.log(np.array([200, 100, 150]) / 255), rtol=1e-5)


def test_network_keeps_the_window_shape() -> None:
    torch.manual_seed(0)
    net = NucleusUNet(UNetShape(base_channels=4, depth=2, groups=2))
    out = net(torch.zeros((1, INPUT_CHANNELS, 24, 32)))
    assert out.shape == (1, 2, 24, 32)
