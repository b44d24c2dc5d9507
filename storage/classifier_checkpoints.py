"""Classifier weights and training state per fold, written atomically.

Layout under layout.models_dir:

    classifier/fold=<k>/
        model.pt            the kept weights (lowest validation loss): a torch state dict
        model.json          metadata: best step and loss, history, settings, timing, ...
        training_state.pt   everything needed to resume an interrupted run; removed when done

Files are loaded with `torch.load(weights_only=True)`: tensors, numbers, strings, lists and
dicts only, never code.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from storage.atomic import atomic_path, remove_stale_temporaries
from storage.errors import StoreLayoutError

MODEL_FILE = "model.pt"
METADATA_FILE = "model.json"
STATE_FILE = "training_state.pt"


def fold_dir(models_dir: Path, fold: int) -> Path:
    return Path(models_dir) / "classifier" / f"fold={int(fold)}"


def _save_torch(path: Path, obj: Any) -> str:
    """Save atomically; returns the file's sha256."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        with open(tmp, "rb+") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            os.fsync(fh.fileno())
    return digest


def load_state_file(path: Path) -> dict[str, Any]:
    """A torch file of plain data (a state dict, a training state) on the CPU."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise StoreLayoutError(f"No weights file at {path}.") from err
    except Exception as err:  # a truncated or foreign file
        raise StoreLayoutError(f"{path} is not a readable torch state file ({err}).") from err


def save_training_state(directory: Path, state: Mapping[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    _save_torch(directory / STATE_FILE, dict(state))
    return directory / STATE_FILE


def load_training_state(directory: Path) -> dict[str, Any] | None:
    """The saved state of an interrupted run, or None when there is none."""
    path = Path(directory) / STATE_FILE
    return load_state_file(path) if path.is_file() else None


def clear_training_state(directory: Path) -> None:
    (Path(directory) / STATE_FILE).unlink(missing_ok=True)


def save_model(
    directory: Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> Path:
    """Write the weights, then the metadata naming their sha256 (its presence marks a
    complete model)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    cpu = {k: v.detach().cpu() for k, v in state_dict.items()}
    digest = _save_torch(directory / MODEL_FILE, cpu)
    text = json.dumps({**metadata, "model_sha256": digest}, indent=2, sort_keys=True,
                      default=str)
    with atomic_path(directory / METADATA_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return directory / MODEL_FILE


def load_model_metadata(directory: Path) -> dict[str, Any]:
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise StoreLayoutError(
            f"No trained classifier in {directory}: materialise the classifier asset for it."
        )
    return json.loads(path.read_text(encoding="utf-8"))


def load_model(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of a fold's kept weights."""
    metadata = load_model_metadata(directory)
    return load_state_file(Path(directory) / MODEL_FILE), metadata
