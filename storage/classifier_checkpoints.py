"""Classifier weights and resumable training state per fold, as storage/checkpoints folders.

Layout under layout.models_dir:

    classifier/fold=<k>/
        model/       kind "classifier": part "model" = the kept weights (lowest validation
                     loss); metadata: best step and loss, history, settings, timing, ...
        training/    kind "classifier_training": everything an interrupted run resumes from
                     (model, optimizer, scheduler, scaler, kept weights, loop counters);
                     removed when the fold finishes

Each folder is replaced atomically (storage/checkpoints.py); files load with
`torch.load(weights_only=True)`: tensors, numbers, strings, lists and dicts only, never code.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.checkpoints import (
    checkpoint_exists,
    load_checkpoint,
    read_checkpoint_sidecar,
    save_checkpoint,
)
from storage.errors import StoreLayoutError
from storage.fs import as_path, remove_tree

if TYPE_CHECKING:  # torch is imported where weights are read, not to list trained folds
    import torch

MODEL_KIND = "classifier"
TRAINING_KIND = "classifier_training"
# Parts of a training state that are state dicts; every other key travels in the "loop" part.
_STATE_PARTS = ("model", "optimizer", "scheduler", "scaler", "best_state")


def fold_dir(models_dir: Path, fold: int) -> Path:
    return as_path(models_dir) / "classifier" / f"fold={int(fold)}"


def load_state_file(path: Path) -> dict[str, Any]:
    """A plain torch state-dict file (e.g. torchvision's ImageNet ResNet-18) on the CPU."""
    import torch

    path = as_path(path)
    try:
        source = path if isinstance(path, Path) else io.BytesIO(path.read_bytes())
        return torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise StoreLayoutError(f"No weights file at {path}.") from err
    except Exception as err:  # a truncated or foreign file
        raise StoreLayoutError(f"{path} is not a readable torch state file ({err}).") from err


def save_training_state(directory: Path, state: Mapping[str, Any]) -> Path:
    """Replace the fold's resumable state (`directory` is the fold folder)."""
    parts = {name: state[name] for name in _STATE_PARTS if name in state}
    parts["loop"] = {k: v for k, v in state.items() if k not in _STATE_PARTS}
    return save_checkpoint(as_path(directory) / "training", parts,
                           {"step": int(state.get("step", 0))}, kind=TRAINING_KIND)


def load_training_state(directory: Path) -> dict[str, Any] | None:
    """The saved state of an interrupted run, or None when there is none."""
    path = as_path(directory) / "training"
    if not checkpoint_exists(path):
        return None
    checkpoint = load_checkpoint(path, kind=TRAINING_KIND)
    parts = dict(checkpoint.state_dicts)
    loop = dict(parts.pop("loop", {}))
    return {**loop, **parts}


def clear_training_state(directory: Path) -> None:
    remove_tree(as_path(directory) / "training")


def save_model(
    directory: Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> Path:
    """Write the fold's kept weights and their metadata (JSON-safe values)."""
    return save_checkpoint(as_path(directory) / "model", {"model": state_dict}, metadata,
                           kind=MODEL_KIND)


def load_model_metadata(directory: Path) -> dict[str, Any]:
    path = as_path(directory) / "model"
    if not checkpoint_exists(path):
        raise StoreLayoutError(
            f"No trained classifier in {directory}: materialise the classifier asset for it."
        )
    return dict(read_checkpoint_sidecar(path, kind=MODEL_KIND)["metadata"])


def load_model(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of a fold's kept weights."""
    if not checkpoint_exists(as_path(directory) / "model"):
        load_model_metadata(directory)  # raises the helpful error
    checkpoint = load_checkpoint(as_path(directory) / "model", kind=MODEL_KIND, parts=["model"])
    return dict(checkpoint.state_dicts["model"]), checkpoint.metadata


def trained_folds(models_dir: Path) -> list[int]:
    """The folds whose kept weights are saved under `models_dir`, ascending."""
    root = as_path(models_dir) / "classifier"
    if not root.is_dir():
        return []
    folds = []
    for path in root.iterdir():
        key, _, suffix = path.name.partition("=")
        if key == "fold" and suffix.isdigit() and checkpoint_exists(path / "model"):
            folds.append(int(suffix))
    return sorted(folds)
