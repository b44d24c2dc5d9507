"""Class probabilities of nucleus patches with a trained classifier (reusable for new slides).

`predict_probabilities` takes patches in memory; `predict_source` streams one slide's patches
chunk by chunk so a slide never sits in memory; `prediction_frame` turns the result into the
per-nucleus table stored as the nucleus_predictions dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl
import torch
from torch import nn

from pipelines.cell_types import CELL_TYPES
from pipelines.torch_device import select_device
from pipelines.train.loader import ChunkSource
from pipelines.train.loop import autocast_dtype, to_input


def probability_columns(cell_types: Sequence[str] = CELL_TYPES) -> list[str]:
    return [f"prob_{name}" for name in cell_types]


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    blocks: Iterable[np.ndarray],
    device: str | torch.device = "auto",
    batch_size: int = 1024,
    amp: bool = True,
) -> np.ndarray:
    """Softmax probabilities (n, n_classes) float32 for uint8 (b, px, px, 3) patch blocks,
    concatenated in order; blocks are regrouped into batches of `batch_size`."""
    device = select_device(device) if isinstance(device, str) else device
    precision = autocast_dtype(device, amp)
    channels_last = device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    n_pending = 0

    def flush() -> None:
        nonlocal pending, n_pending
        if not pending:
            return
        images = np.concatenate(pending) if len(pending) > 1 else pending[0]
        x = to_input(torch.from_numpy(np.ascontiguousarray(images)).to(device), channels_last)
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            logits = model(x)
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        pending, n_pending = [], 0

    for block in blocks:
        for a in range(0, len(block), batch_size):
            part = block[a : a + batch_size]
            pending.append(part)
            n_pending += len(part)
            if n_pending >= batch_size:
                flush()
    flush()
    model.train(was_training)
    n_classes = int(model.fc.out_features) if hasattr(model, "fc") else 0
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, n_classes), np.float32)


def predict_probabilities(
    model: nn.Module, images: np.ndarray, device: str | torch.device = "auto",
    batch_size: int = 1024, amp: bool = True,
) -> np.ndarray:
    """Softmax probabilities (n, n_classes) for uint8 patches (n, px, px, 3)."""
    return predict_batches(model, [images], device, batch_size, amp)


def predict_source(
    model: nn.Module, source: ChunkSource, device: str | torch.device = "auto",
    batch_size: int = 1024, amp: bool = True,
) -> np.ndarray:
    """Probabilities for every row of one slide's patches, read one chunk at a time."""
    blocks = (source.read_chunk(k) for k in range(source.n_chunks))
    return predict_batches(model, blocks, device, batch_size, amp)


def prediction_frame(
    slide_id: str,
    nucleus_id: np.ndarray,
    class_index: np.ndarray,
    edge: np.ndarray,
    probabilities: np.ndarray,
    fold: int | None,
    cell_types: Sequence[str] = CELL_TYPES,
) -> pl.DataFrame:
    """One row per nucleus: the true class (class_index -1 / cell_type null when unlabelled),
    the predicted class and its probability, and every class's probability."""
    names = np.array(cell_types, dtype=object)
    predicted = probabilities.argmax(axis=1).astype(np.int16)
    true = np.asarray(class_index, dtype=np.int16)
    frame = pl.DataFrame({
        "nucleus_id": pl.Series(np.asarray(nucleus_id, dtype=np.int64), dtype=pl.Int64),
        "slide_id": pl.Series([slide_id] * len(true), dtype=pl.Utf8),
        "fold": pl.Series([fold] * len(true), dtype=pl.Int16),
        "class_index": pl.Series(true, dtype=pl.Int16),
        "cell_type": pl.Series([names[c] if c >= 0 else None for c in true], dtype=pl.Utf8),
        "predicted_index": pl.Series(predicted, dtype=pl.Int16),
        "predicted_cell_type": pl.Series(names[predicted].tolist(), dtype=pl.Utf8),
        "probability": pl.Series(probabilities.max(axis=1, initial=0.0), dtype=pl.Float32),
        "edge": pl.Series(np.asarray(edge, dtype=bool), dtype=pl.Boolean),
    })
    probs = pl.DataFrame(
        {col: probabilities[:, i] for i, col in enumerate(probability_columns(cell_types))},
        schema={col: pl.Float32 for col in probability_columns(cell_types)},
    )
    return pl.concat([frame, probs], how="horizontal")
