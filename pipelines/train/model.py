"""ResNet-18 with every BatchNorm replaced by InstanceNorm and a 14-class head (§2.4).

ImageNet weights are used when a local file is found (never downloaded): an explicit path, then
`$NUCLEUS_SUBTYPING_RESNET18_WEIGHTS`, then torchvision's file in the torch hub cache. Without
one the network starts from random weights and a warning says so.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from pipelines.cell_types import CELL_TYPES
from pipelines.errors import ConfigurationError

log = logging.getLogger(__name__)

WEIGHTS_ENV = "NUCLEUS_SUBTYPING_RESNET18_WEIGHTS"
HUB_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1


class RandomInitWarning(UserWarning):
    """The classifier starts from random weights because no ImageNet file was found."""


def hub_weights_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet-18 file ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILE


def find_imagenet_weights(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The local ImageNet ResNet-18 file to start from, or None when there is none.

    An explicit path (from config) or the environment variable must exist: a typo is an error,
    not a silent random start. The hub cache is only used when present.
    """
    for source, value in (("config", explicit), (WEIGHTS_ENV, os.environ.get(WEIGHTS_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ConfigurationError(
                    f"ResNet-18 weights {path} (from {source}) do not exist; fix the path or "
                    f"unset it to use {hub_weights_path()} or random initialisation."
                )
            return path
    hub = hub_weights_path()
    return hub if hub.is_file() else None


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
