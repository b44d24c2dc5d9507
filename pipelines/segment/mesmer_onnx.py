"""Mesmer as ONNX, run with onnxruntime in the main environment (the opt-in `mesmer-onnx` backend).

The network is Mesmer's own (converted from the TensorFlow SavedModel); everything around it
follows deepcell 0.12's `Mesmer.predict(compartment="nuclear")`, step by step:

1. resample the window from the slide's `mpp` to Mesmer's 0.5 µm/px (bilinear, anti-aliased);
2. per stain: clip the non-zero pixels at their 99.9th percentile, rescale to [0, 1] and apply
   CLAHE (`equalize_adapthist`, kernel 128); a constant stain becomes all zeros;
3. cut 256 x 256 model tiles with a stride of 3/4 tile, run the network, and blend the tiles back
   with deepcell's squared-spline window;
4. deep watershed on the nuclear heads: h-maxima (h = 0.1, disk radius 2) of the inner-distance
   map seed a watershed of the smoothed (sigma 2) interior probability, masked at > 0.2; objects
   under 15 px are dropped and holes under 15 px filled;
5. resample the labels back to the window's grid (nearest neighbour).

The model file, where it is found and its licence: see storage/model_weights.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.signal.windows import triang
from skimage.exposure import equalize_adapthist, rescale_intensity
from skimage.measure import label as label_components
from skimage.measure import regionprops
from skimage.morphology import disk, h_maxima
from skimage.segmentation import relabel_sequential, watershed
from skimage.transform import resize

from pipelines.errors import ConfigurationError
from pipelines.segment.mesmer_weights import MODEL_MPP

MODEL_TILE_PX = 256
STRIDE_RATIO = 0.75
NUCLEAR_HEADS = (2, 3)  # outputs: whole-cell distance, whole-cell pixelwise, nuclear ditto


@dataclass(frozen=True)
class MesmerPostprocess:
    """deepcell 0.12's nuclear post-processing defaults (`Mesmer.predict`)."""

    maxima_threshold: float = 0.1
    maxima_smooth: float = 0.0
    interior_threshold: float = 0.2
    interior_smooth: float = 2.0
    small_objects_px: int = 15
    fill_holes_px: int = 15
    radius_px: int = 2


@dataclass(frozen=True)
class MesmerPreprocess:
    """deepcell 0.12's `mesmer_preprocess` defaults."""

    percentile: float = 99.9
    clahe_kernel_px: int = 128


def resample_to_model(image: np.ndarray, mpp: float) -> np.ndarray:
    """(h, w, stain) at `mpp` µm/px -> float32 at Mesmer's 0.5 µm/px (bilinear, anti-aliased)."""
    if mpp == MODEL_MPP:
        return image.astype(np.float32, copy=False)
    scale = mpp / MODEL_MPP
    shape = (int(image.shape[0] * scale), int(image.shape[1] * scale), image.shape[2])
    out = resize(
        image.astype(np.float32, copy=False), shape, order=1, mode="constant",
        anti_aliasing=True, preserve_range=True,
    )
    return out.astype(np.float32, copy=False)


def normalise_stains(
    image: np.ndarray, params: MesmerPreprocess = MesmerPreprocess()
) -> np.ndarray:
    """Mesmer's input normalisation, per stain: percentile clip, then CLAHE into [0, 1]."""
    out = np.zeros(image.shape, dtype=np.float32)
    for c in range(image.shape[-1]):
        stain = image[..., c].astype(np.float32, copy=True)
        nonzero = stain[stain != 0]
        if nonzero.size == 0:
            continue  # deepcell leaves an all-zero stain at zero
        ceiling = np.percentile(nonzero, params.percentile)
        np.minimum(stain, ceiling, out=stain)
        if np.all(stain == stain.flat[0]):
            continue  # constant after clipping: normalised as zeros
        stain = rescale_intensity(stain, out_range=(0.0, 1.0))
        out[..., c] = equalize_adapthist(stain, kernel_size=params.clahe_kernel_px)
    return out


@dataclass(frozen=True)
class _Grid:
    """Tile origins along one axis of a padded image, and each tile's blending overlaps."""

    starts: tuple[int, ...]
    overlaps: tuple[tuple[int, int], ...]
    pad: tuple[int, int]
    padded: int


def _axis_grid(size: int, tile: int = MODEL_TILE_PX, ratio: float = STRIDE_RATIO) -> _Grid:
    """deepcell's tile layout along one axis: stride = 3/4 tile (rounded up to even), the
    image centred in the padding, the last tile flush with the end."""
    stride = min(int(np.ceil(ratio * tile / 2.0) * 2), tile)
    reps = max(int(np.ceil((size - tile) / stride + 1)), 1)
    excess = tile + stride * (reps - 1) - size
    pad = (int(np.ceil(excess / 2)), int(np.floor(excess / 2)))
    padded = size + excess
    starts, overlaps = [], []
    for i in range(reps):
        start = i * stride if i != reps - 1 else padded - tile
        if i == 0:
            overlap = (0, tile - stride)
        elif i == reps - 2:
            overlap = (tile - stride, tile - padded + start + tile)
        elif i == reps - 1:
            overlap = ((i - 1) * stride + tile - start, 0)
        else:
            overlap = (tile - stride, tile - stride)
        starts.append(start)
        overlaps.append(overlap)
    return _Grid(tuple(starts), tuple(overlaps), pad, padded)


def _spline(size: int) -> np.ndarray:
    """Squared-spline ramp of `size` samples peaking at 1 (deepcell's `spline_window` kernel)."""
    quarter = int(size / 4)
    tri = triang(size)
    outer = np.abs(2 * tri) ** 2 / 2
    outer[quarter:-quarter] = 0
    inner = 1 - np.abs(2 * (tri - 1)) ** 2 / 2
    inner[:quarter] = 0
    inner[-quarter:] = 0
    ramp = outer + inner
    return ramp / ramp.max()


@cache
def _window_1d(size: int, left: int, right: int) -> np.ndarray:
    window = np.ones(size)
    if left > 0:
        window[:left] = _spline(2 * left)[:left]
    if right > 0:
        window[-right:] = _spline(2 * right)[right:]
    return window


def predict_heads(image: np.ndarray, run_model, batch_size: int = 4) -> list[np.ndarray]:
    """Run `run_model((n, 256, 256, stain)) -> list of (n, 256, 256, k)` over a normalised image
    (h, w, stain) and return each head as (h, w, k), tiles blended as deepcell does."""
    h, w = image.shape[:2]
    if h < MODEL_TILE_PX or w < MODEL_TILE_PX:
        # deepcell reflects a small image out to one model tile (per axis here, so that a
        # window small in one axis only still makes a 256 x 256 tile) and crops afterwards.
        dy, dx = max(MODEL_TILE_PX - h, 0), max(MODEL_TILE_PX - w, 0)
        pads = ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2), (0, 0))
        heads = predict_heads(np.pad(image, pads, mode="reflect"), run_model, batch_size)
        return [head[pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + w] for head in heads]
    gy, gx = _axis_grid(h), _axis_grid(w)
    padded = np.pad(image, (gy.pad, gx.pad, (0, 0)), mode="constant")
    blend = gy.padded > MODEL_TILE_PX and gx.padded > MODEL_TILE_PX
    boxes = [(y, x, oy, ox) for y, oy in zip(gy.starts, gy.overlaps, strict=True)
             for x, ox in zip(gx.starts, gx.overlaps, strict=True)]
    outputs: list[np.ndarray] = []
    for first in range(0, len(boxes), batch_size):
        batch = boxes[first : first + batch_size]
        tiles = np.stack(
            [padded[y : y + MODEL_TILE_PX, x : x + MODEL_TILE_PX] for y, x, _, _ in batch]
        )
        results = run_model(tiles.astype(np.float32, copy=False))
        if not outputs:
            outputs = [np.zeros((gy.padded, gx.padded, r.shape[-1])) for r in results]
        for (y, x, oy, ox), *tile_heads in zip(batch, *results, strict=True):
            weight = np.outer(_window_1d(MODEL_TILE_PX, *oy), _window_1d(MODEL_TILE_PX, *ox))
            for out, head in zip(outputs, tile_heads, strict=True):
                target = out[y : y + MODEL_TILE_PX, x : x + MODEL_TILE_PX]
                if blend:
                    target += head * weight[..., None]
                else:
                    target[...] = head
    crop = (slice(gy.pad[0], gy.padded - gy.pad[1]), slice(gx.pad[0], gx.padded - gx.pad[1]))
    return [out[crop].astype(np.float32) for out in outputs]


def deep_watershed(
    inner_distance: np.ndarray,
    interior: np.ndarray,
    params: MesmerPostprocess = MesmerPostprocess(),
) -> np.ndarray:
    """Instance labels (int32, 1..n) from Mesmer's inner-distance and interior maps (h, w)."""
    maxima = ndi.gaussian_filter(inner_distance, params.maxima_smooth)
    interior = ndi.gaussian_filter(interior, params.interior_smooth)
    markers = label_components(h_maxima(maxima, params.maxima_threshold, disk(params.radius_px)))
    labels = watershed(-interior, markers, mask=interior > params.interior_threshold)
    if params.small_objects_px:
        sizes = np.bincount(labels.ravel())
        small = sizes < params.small_objects_px
        small[0] = False
        labels[small[labels]] = 0
    if params.fill_holes_px > 0:
        labels = _fill_small_holes(labels, params.fill_holes_px)
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.int32, copy=False)


def _fill_small_holes(labels: np.ndarray, max_hole_px: int) -> np.ndarray:
    """deepcell's `fill_holes`: in the bounding box of each object with a hole, every
    4-connected patch of non-object pixels smaller than `max_hole_px` joins the object."""
    out = labels.copy()
    four = ndi.generate_binary_structure(2, 1)
    for region in regionprops(labels):
        if region.euler_number >= 1:
            continue
        patch = out[region.slice]
        gaps, n = ndi.label(patch != region.label, structure=four)
        if n == 0:
            continue
        sizes = np.bincount(gaps.ravel(), minlength=n + 1)
        fill = sizes < max_hole_px
        fill[0] = False
        patch[fill[gaps]] = region.label
    return out


def resample_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of a label image to `shape` (OpenCV's INTER_NEAREST rule)."""
    if labels.shape == tuple(shape):
        return labels
    rows = np.minimum((np.arange(shape[0]) * (labels.shape[0] / shape[0])).astype(np.int64),
                      labels.shape[0] - 1)
    cols = np.minimum((np.arange(shape[1]) * (labels.shape[1] / shape[1])).astype(np.int64),
                      labels.shape[1] - 1)
    return labels[np.ix_(rows, cols)]


class MesmerOnnxSegmenter:
    """The `mesmer-onnx` backend: Mesmer's network in onnxruntime, deepcell's processing."""

    name = "mesmer-onnx"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        halo_px: int = 64,
        batch_size: int = 4,
        postprocess: MesmerPostprocess = MesmerPostprocess(),
        preprocess: MesmerPreprocess = MesmerPreprocess(),
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ConfigurationError(
                f"Mesmer ONNX model {self.model_path} is not a file; find it with "
                "storage.model_weights.resolve_mesmer_onnx_model."
            )
        self.halo_px = halo_px
        self.batch_size = batch_size
        self.postprocess = postprocess
        self.preprocess = preprocess
        try:
            import onnxruntime
        except ImportError as exc:
            raise ConfigurationError(
                "The mesmer-onnx backend needs onnxruntime: pip install 'nucleus-subtyping[onnx]'."
            ) from exc
        self._session = onnxruntime.InferenceSession(
            str(self.model_path), providers=list(providers)
        )
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] != 2 or len(self._session.get_outputs()) != 4:
            raise ConfigurationError(
                f"{self.model_path} is not a Mesmer model: expected one (n, 256, 256, 2) input "
                "and four outputs (whole-cell and nuclear inner-distance and pixelwise)."
            )
        self._input = inputs[0].name

    def _run(self, tiles: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {self._input: tiles})

    def heads(
        self, nuclear: np.ndarray, membrane: np.ndarray | None, mpp: float
    ) -> list[np.ndarray]:
        """Mesmer's four output maps (at 0.5 µm/px) for one window."""
        membrane = np.zeros_like(nuclear) if membrane is None else membrane
        image = resample_to_model(np.stack([nuclear, membrane], axis=-1), mpp)
        return predict_heads(normalise_stains(image, self.preprocess), self._run, self.batch_size)

    def segment(self, nuclear: np.ndarray, membrane: np.ndarray | None, mpp: float) -> np.ndarray:
        """int32 nucleus labels on the window's grid; 0 = background."""
        if nuclear.size == 0:
            return np.zeros(nuclear.shape, dtype=np.int32)
        heads = self.heads(nuclear, membrane, mpp)
        distance, pixelwise = heads[NUCLEAR_HEADS[0]], heads[NUCLEAR_HEADS[1]]
        labels = deep_watershed(distance[..., 0], pixelwise[..., 1], self.postprocess)
        return resample_labels(labels, nuclear.shape).astype(np.int32, copy=False)
