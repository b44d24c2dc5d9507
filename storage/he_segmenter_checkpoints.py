"""Weights of the he-learned H&E nucleus segmenter, as a storage/checkpoints folder.

Layout under layout.models_dir:

    he_learned/     kind "he_segmenter": part "model" = the U-Net's state dict; metadata: the
                    network's pixel size (mpp), its shape, the post-processing settings, the
                    step count and the training record (settings, slides, losses, timing)

The folder is replaced atomically (storage/checkpoints.py); files load with
`torch.load(weights_only=True)`: tensors, numbers, strings, lists and dicts only, never code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # storage.checkpoints loads torch where it saves or loads
    import torch

from storage.checkpoints import checkpoint_exists, load_checkpoint, save_checkpoint
from storage.errors import StoreLayoutError
from storage.fs import as_path

KIND = "he_segmenter"
FOLDER = "he_learned"


def he_segmenter_dir(models_dir: str | Path) -> Path:
    return as_path(models_dir) / FOLDER


def save_he_segmenter(
    directory: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> Path:
    """Write the weights and their JSON-safe metadata, replacing an older checkpoint."""
    return save_checkpoint(directory, {"model": state_dict}, metadata, kind=KIND)


def load_he_segmenter(
    directory: str | Path, *, how_to_train: str = "materialise the he_nucleus_model asset"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata); a clear error naming the folder and `how_to_train` if absent."""
    directory = as_path(directory)
    if not checkpoint_exists(directory):
        raise StoreLayoutError(
            f"No he-learned weights at {directory} (the H&E nucleus segmenter is trained by the "
            f"project, never downloaded): {how_to_train}."
        )
    checkpoint = load_checkpoint(directory, kind=KIND, parts=["model"])
    return dict(checkpoint.state_dicts["model"]), checkpoint.metadata
