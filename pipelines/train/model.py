"""ResNet-18 with every BatchNorm replaced by InstanceNorm and a 14-class head (§2.4).

ImageNet weights come in as a state dict, from the local file `storage/model_weights.py` finds
(never downloaded): an explicit path, then `$NUCLEUS_SUBTYPING_RESNET18_WEIGHTS`, then
torchvision's file in the torch hub cache. Without one the network starts from random weights
and a warning says so.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from pipelines.cell_types import CELL_TYPES
from pipelines.errors import ConfigurationError
from storage.model_weights import HUB_FILE, WEIGHTS_ENV, hub_weights_path

log = logging.getLogger(__name__)

class RandomInitWarning(UserWarning):
    """The classifier starts from random weights because no ImageNet file was found."""


def instance_norm_(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d below `module` by InstanceNorm2d(num_features), in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.InstanceNorm2d(child.num_features))
        else:
            instance_norm_(child)
    return module


def build_classifier(
    n_classes: int = len(CELL_TYPES),
    imagenet_state: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
) -> nn.Module:
    """ResNet-18, ImageNet weights when given (BatchNorm parameters dropped with the swap),
    InstanceNorm throughout, and a fresh `n_classes` linear head. Inputs: RGB in [0, 1].

    Random parts (the head, or everything without ImageNet weights) are drawn from `seed`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(n_classes, imagenet_state)


def _build(n_classes: int, imagenet_state: Mapping[str, torch.Tensor] | None) -> nn.Module:
    net = torchvision.models.resnet18(weights=None)
    if imagenet_state is not None:
        try:
            net.load_state_dict(dict(imagenet_state), strict=True)
        except RuntimeError as err:
            raise ConfigurationError(
                f"The ResNet-18 weights do not fit torchvision's resnet18 ({err}); "
                "use torchvision's resnet18-f37072fd.pth or a state dict saved from resnet18()."
            ) from err
    else:
        warnings.warn(
            "No ImageNet ResNet-18 weights found locally: the classifier starts from random "
            f"weights. Put {HUB_FILE} in {hub_weights_path().parent} or set {WEIGHTS_ENV}.",
            RandomInitWarning,
            stacklevel=3,
        )
    instance_norm_(net)
    net.fc = nn.Linear(net.fc.in_features, n_classes)
    return net


def describe_init(weights: Path | None) -> str:
    return f"imagenet ({weights})" if weights is not None else "random"
