"""A tiny slide for the inference tests: MxIF phantom, nucleus mask and nucleus_features, plus
fold classifiers saved through the project's checkpoint code."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pipelines.cell_types import CELL_TYPES
from pipelines.quantify import quantify_slide
from pipelines.train.model import RandomInitWarning, build_classifier
from storage import classifier_checkpoints as ckpt
from storage.layout import DataLayout
from storage.mask_store import create_mask, open_mask
from storage.parquet_dataset import write_slide_partition
from storage.slide_store import SlideInfo, create_slide, open_slide
from tests.vhe_phantom import Phantom, make_phantom

MPP = 0.32


def fold_model(seed: int) -> nn.Module:
    """A randomly initialised classifier whose head is scaled up, so its classes differ
    between nuclei instead of being near-uniform."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        model = build_classifier(len(CELL_TYPES), None, seed=seed)
    with torch.no_grad():
        model.fc.weight.mul_(60.0)
    return model.eval()


def save_fold(layout: DataLayout, fold: int, model: nn.Module) -> None:
    ckpt.save_model(ckpt.fold_dir(layout.models_dir, fold), model.state_dict(),
                    {"fold": fold, "cell_types": list(CELL_TYPES), "best_step": 0})


def write_slide(layout: DataLayout, slide_id: str, height: int = 200, width: int = 240,
                seed: int = 3, chunk_px: int = 64) -> Phantom:
    """Slide store, mask store (chunks of `chunk_px`) and nucleus_features of a phantom."""
    ph = make_phantom(height, width, seed=seed)
    info = SlideInfo(slide_id, ph.stains, MPP, height, width, "uint16")
    with create_slide(layout.slide_zarr(slide_id), info, chunk_px=128) as writer:
        writer.write(0, 0, ph.image)
    with create_mask(layout.mask_zarr(slide_id), slide_id, height, width,
                     chunk_px=chunk_px) as writer:
        writer.write(0, 0, ph.labels)
    features = quantify_slide(open_slide(layout.slide_zarr(slide_id)),
                              open_mask(layout.mask_zarr(slide_id)))
    write_slide_partition(layout.features_dir, slide_id, features)
    return ph
