"""Cell types of every nucleus of any slide, labelled or not, from trained classifier folds.

Patches are cut from the slide's virtual H&E tile by tile exactly as for training
(pipelines/patches/: 41x41 px at 0.5 µm/px, centred on each nucleus) and predicted in batches
as they come (pipelines/train/predict.py) by one fold model or several, whose class
probabilities are averaged (an ensemble). Outlines for viewers are traced from the nucleus mask
tile by tile (the whole-slide map is pipelines/inference_map.py). Nothing is written here.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn

from pipelines.cell_types import CELL_TYPES
from pipelines.errors import ConfigurationError, SlideInputError
from pipelines.outlines import OutlineParams, trace_outlines
from pipelines.patches import PatchParams, PatchPlan, extract_patches, plan_patches
from pipelines.torch_device import select_device
from pipelines.train.model import RandomInitWarning, build_classifier
from pipelines.train.predict import predict_probabilities, probability_columns
from storage.tiles import DEFAULT_TILE_PX, tile_grid

ReadWindow = Callable[[int, int, int, int], np.ndarray]


@dataclass(frozen=True)
class InferenceParams:
    """`batch_size`: patches per forward pass; `device`: auto (cuda, mps, cpu), cpu, cuda...;
    `amp`: mixed precision on CUDA; `tile_px`: slide pixels per tile side when cutting patches
    (the patches do not depend on it)."""

    batch_size: int = 1024
    device: str = "auto"
    amp: bool = True
    tile_px: int = DEFAULT_TILE_PX

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.tile_px < 1:
            raise ConfigurationError(
                f"batch_size and tile_px must be >= 1, got {self.batch_size}, {self.tile_px}.")


def classifier_from_state(
    state: Mapping[str, torch.Tensor], n_classes: int = len(CELL_TYPES)
) -> nn.Module:
    """The project's ResNet-18 holding trained weights (a fold checkpoint's state dict)."""
    with warnings.catch_warnings():  # the random start is overwritten at once
        warnings.simplefilter("ignore", RandomInitWarning)
        model = build_classifier(n_classes, None)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:
        raise ConfigurationError(
            f"The checkpoint does not fit the {n_classes}-class ResNet-18 classifier ({err}); "
            "re-materialise the classifier asset."
        ) from err
    return model.eval()


def plan_inference(
    slide_id: str,
    features: pl.DataFrame,
    height_px: int,
    width_px: int,
    mpp: float,
    params: InferenceParams = InferenceParams(),
) -> PatchPlan:
    """Where the patch of every nucleus of `features` (nucleus_id, centroid_y_px,
    centroid_x_px on the slide grid of `mpp` µm/px) comes from; rows in nucleus_id order."""
    n = features.height
    return plan_patches(
        slide_id, features["nucleus_id"].to_numpy(), np.full(n, -1, np.int16),
        features["centroid_y_px"].to_numpy(), features["centroid_x_px"].to_numpy(),
        height_px, width_px, mpp, PatchParams(tile_px=params.tile_px),
    )


class EnsemblePredictor:
    """Receives patch rows in any order (`add(start_row, images)`, the patch store's writer
    signature), predicts them in batches with every model and sums the probabilities."""

    def __init__(self, models: Sequence[nn.Module], n_rows: int, params: InferenceParams,
                 n_classes: int = len(CELL_TYPES)) -> None:
        if not models:
            raise ConfigurationError("Inference needs at least one trained classifier.")
        self.models, self.params = list(models), params
        self.device = select_device(params.device)
        self.total = np.zeros((n_rows, n_classes), np.float64)
        self.seen = np.zeros(n_rows, bool)
        self.model_seconds = 0.0
        self._rows: list[np.ndarray] = []
        self._blocks: list[np.ndarray] = []
        self._pending = 0

    def add(self, start_row: int, images: np.ndarray) -> None:
        self._rows.append(np.arange(start_row, start_row + len(images)))
        self._blocks.append(np.array(images, copy=True))  # the caller reuses its buffers
        self._pending += len(images)
        if self._pending >= self.params.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self._blocks:
            return
        rows, images = np.concatenate(self._rows), np.concatenate(self._blocks)
        self._rows, self._blocks, self._pending = [], [], 0
        t0 = time.perf_counter()
        for model in self.models:
            self.total[rows] += predict_probabilities(
                model, images, self.device, self.params.batch_size, self.params.amp)
        self.model_seconds += time.perf_counter() - t0
        self.seen[rows] = True

    def finish(self) -> np.ndarray:
        """(n_rows, n_classes) float32: the models' mean class probabilities per row."""
        self._flush()
        if not self.seen.all():
            raise SlideInputError(f"{int((~self.seen).sum())} nuclei got no patch to predict.")
        return (self.total / len(self.models)).astype(np.float32)


@dataclass(frozen=True)
class SlidePrediction:
    """Mean class probabilities (n, n_classes) of the plan's nuclei (nucleus_id order)."""

    nucleus_id: np.ndarray
    probabilities: np.ndarray
    n_models: int
    n_tiles: int
    device: str
    seconds: float
    model_seconds: float

    @property
    def patches_per_s(self) -> float:
        return len(self.nucleus_id) / max(self.seconds, 1e-9)


def predict_slide(
    read_rgb: ReadWindow,
    plan: PatchPlan,
    models: Sequence[nn.Module],
    params: InferenceParams = InferenceParams(),
) -> SlidePrediction:
    """Cut every planned patch from `read_rgb(y0, x0, y1, x1)` (the virtual H&E on the slide
    grid, (h, w, 3) uint8) tile by tile and average the models' softmax probabilities."""
    t0 = time.perf_counter()
    predictor = EnsemblePredictor(models, plan.n_patches, params)
    summary = extract_patches(read_rgb, plan, predictor.add, PatchParams(tile_px=params.tile_px))
    probabilities = predictor.finish()
    return SlidePrediction(plan.nucleus_id, probabilities, len(predictor.models),
                           summary.n_tiles, predictor.device.type, time.perf_counter() - t0,
                           predictor.model_seconds)


def inference_frame(
    slide_id: str,
    nucleus_id: np.ndarray,
    probabilities: np.ndarray,
    folds: Sequence[int],
    cell_types: Sequence[str] = CELL_TYPES,
) -> pl.DataFrame:
    """One row per nucleus: the predicted class, its probability, every class's probability
    (prob_<cell_type>) and the folds whose models were averaged (`models`)."""
    names = np.array(cell_types, dtype=object)
    predicted = probabilities.argmax(axis=1).astype(np.int16)
    n = len(predicted)
    frame = pl.DataFrame({
        "nucleus_id": pl.Series(np.asarray(nucleus_id, np.int64), dtype=pl.Int64),
        "slide_id": pl.Series([slide_id] * n, dtype=pl.Utf8),
        "predicted_index": pl.Series(predicted, dtype=pl.Int16),
        "predicted_cell_type": pl.Series(names[predicted].tolist(), dtype=pl.Utf8),
        "probability": pl.Series(probabilities.max(axis=1, initial=0.0), dtype=pl.Float32),
    })
    probs = pl.DataFrame(
        {c: probabilities[:, i] for i, c in enumerate(probability_columns(cell_types))},
        schema={c: pl.Float32 for c in probability_columns(cell_types)},
    )
    models = pl.Series("models", [sorted(int(f) for f in folds)] * n, dtype=pl.List(pl.Int16))
    return pl.concat([frame, probs], how="horizontal").with_columns(models)


def predicted_counts(frame: pl.DataFrame, cell_types: Sequence[str] = CELL_TYPES
                     ) -> pl.DataFrame:
    """Nuclei per predicted class (every class listed), their share and mean probability."""
    counts = frame.group_by("predicted_cell_type").agg(
        pl.len().alias("n_nuclei"), pl.col("probability").mean().alias("mean_probability"))
    table = pl.DataFrame({"cell_type": list(cell_types)}).join(
        counts.rename({"predicted_cell_type": "cell_type"}), on="cell_type", how="left")
    return table.with_columns(
        pl.col("n_nuclei").fill_null(0).cast(pl.Int64),
        (pl.col("n_nuclei").fill_null(0) / max(frame.height, 1)).round(4).alias("fraction"),
        pl.col("mean_probability").cast(pl.Float64).round(3),
    ).select("cell_type", "n_nuclei", "fraction", "mean_probability")


@dataclass(frozen=True)
class OutlineTiling:
    """`tile_px`: mask pixels per tile side; the halo is the largest nucleus box side, at most
    `max_halo_px` (a nucleus whose box still does not fit gets no outline). Rings keep the
    traced shape exactly, minus collinear vertices (about 2.7x fewer); `tolerance_px` > 0
    simplifies further (Douglas-Peucker: about 1.7x fewer again, but some 15x slower)."""

    tile_px: int = DEFAULT_TILE_PX
    max_halo_px: int = 256
    tolerance_px: float = 0.0


def drop_collinear(ring: np.ndarray) -> np.ndarray:
    """The closed ring without vertices that lie on the line through their neighbours (the
    same polygon, fewer vertices)."""
    pts = ring[:-1] if len(ring) > 1 and np.array_equal(ring[0], ring[-1]) else ring
    if len(pts) < 4:
        return ring
    before, after = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
    cross = ((pts[:, 0] - before[:, 0]) * (after[:, 1] - pts[:, 1])
             - (pts[:, 1] - before[:, 1]) * (after[:, 0] - pts[:, 0]))
    kept = pts[np.abs(cross) > 1e-9]
    if len(kept) < 3:
        return ring
    return np.vstack([kept, kept[:1]])


def slide_outlines(
    read_labels: ReadWindow,
    height_px: int,
    width_px: int,
    nuclei: pl.DataFrame,
    params: OutlineTiling = OutlineTiling(),
) -> Iterator[tuple[int, np.ndarray | None]]:
    """(row of `nuclei`, outline) for every nucleus, tile by tile.

    `nuclei` holds label, centroid_y_px, centroid_x_px and bbox_{y0,x0,y1,x1}_px (half-open)
    on the mask's grid; `read_labels(y0, x0, y1, x1)` returns the int32 mask there. A nucleus
    belongs to the tile whose core holds its centroid, so each is traced once. Outlines are
    closed rings of (x, y) slide pixels with pixel edges on integers (QuPath's convention);
    None when the box leaves the tile's window or the mask has no pixel of the label.
    """
    n = nuclei.height
    if n == 0:
        return
    label = nuclei["label"].to_numpy().astype(np.int64)
    box = np.column_stack([nuclei[f"bbox_{k}_px"].to_numpy().astype(np.int64)
                           for k in ("y0", "x0", "y1", "x1")])
    extent = int(max((box[:, 2] - box[:, 0]).max(), (box[:, 3] - box[:, 1]).max()))
    halo = max(0, min(extent, params.max_halo_px))
    cy = np.clip(np.floor(nuclei["centroid_y_px"].to_numpy()), 0, height_px - 1).astype(np.int64)
    cx = np.clip(np.floor(nuclei["centroid_x_px"].to_numpy()), 0, width_px - 1).astype(np.int64)
    n_cols = -(-width_px // params.tile_px)
    tile_id = (cy // params.tile_px) * n_cols + cx // params.tile_px
    order = np.argsort(tile_id, kind="stable")
    starts = np.searchsorted(tile_id[order], np.arange(tile_id.max() + 2))
    trace = OutlineParams(tolerance_px=params.tolerance_px)
    for k, tile in enumerate(tile_grid(height_px, width_px, params.tile_px, halo)):
        rows = order[starts[k] : starts[k + 1]] if k + 1 < len(starts) else order[:0]
        if len(rows) == 0:
            continue
        fits = ((box[rows, 0] >= tile.read_y0) & (box[rows, 1] >= tile.read_x0)
                & (box[rows, 2] <= tile.read_y1) & (box[rows, 3] <= tile.read_x1))
        window = read_labels(tile.read_y0, tile.read_x0, tile.read_y1, tile.read_x1)
        wanted = {int(label[i]): tuple(int(v) for v in box[i]) for i in rows[fits]}
        rings = trace_outlines(window, tile.read_y0, tile.read_x0, wanted, trace)
        for i in rows:
            ring = rings.get(int(label[i]))
            yield int(i), None if ring is None else drop_collinear(ring)
