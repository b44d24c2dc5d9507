"""ResNet-18 with InstanceNorm: the swap, the head, and ImageNet weights from local files."""

import warnings

import pytest
import torch
import torchvision
from torch import nn

from pipelines.errors import ConfigurationError
from pipelines.train.model import RandomInitWarning, build_classifier
from storage.classifier_checkpoints import load_state_file
from storage.errors import ModelWeightsError
from storage.model_weights import HUB_FILE, WEIGHTS_ENV, find_imagenet_weights


def _quiet_build(**kwargs) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return build_classifier(**kwargs)


def test_every_batchnorm_becomes_default_instancenorm_and_head_has_14_classes() -> None:
    net = _quiet_build()
    kinds = [type(m) for m in net.modules()]
    assert nn.BatchNorm2d not in kinds
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 20  # stem + 16 in the blocks + 3 downsample paths
    default = nn.InstanceNorm2d(64)
    for m in norms:
        assert (m.affine, m.track_running_stats, m.eps, m.momentum) == (
            default.affine, default.track_running_stats, default.eps, default.momentum)
    assert net.fc.out_features == 14 and net.fc.in_features == 512
    out = net(torch.rand(3, 3, 41, 41))
    assert out.shape == (3, 14) and torch.isfinite(out).all()


def test_random_init_warns_and_is_seeded() -> None:
    with pytest.warns(RandomInitWarning, match="random weights"):
        a = build_classifier(seed=1)
    b = _quiet_build(seed=1)
    c = _quiet_build(seed=2)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_weights_from_a_file_keep_every_conv_and_fresh_head(tmp_path, monkeypatch) -> None:
    torch.manual_seed(123)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "my_resnet18.pth"
    torch.save(reference.state_dict(), path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    found = find_imagenet_weights()
    assert found == path
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomInitWarning)  # no warning with weights
        net = build_classifier(imagenet_state=load_state_file(found))
    ref = reference.state_dict()
    got = net.state_dict()
    convs = [k for k in ref if "conv" in k or "downsample.0" in k]
    assert len(convs) == 20
    for key in convs:
        assert torch.equal(got[key], ref[key]), key
    assert not any("bn" in k or "running" in k for k in got)  # InstanceNorm has no state
    assert got["fc.weight"].shape == (14, 512)


def test_hub_cache_is_used_and_explicit_paths_must_exist(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_imagenet_weights() is None
    hub = tmp_path / "hub" / "checkpoints" / HUB_FILE
    hub.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), hub)
    assert find_imagenet_weights() == hub
    explicit = tmp_path / "other.pth"
    torch.save({}, explicit)
    assert find_imagenet_weights(explicit) == explicit
    with pytest.raises(ModelWeightsError, match="do not exist"):
        find_imagenet_weights(tmp_path / "missing.pth")


def test_foreign_weights_are_refused_clearly() -> None:
    with pytest.raises(ConfigurationError, match="resnet18"):
        build_classifier(imagenet_state={"weight": torch.zeros(3)})
