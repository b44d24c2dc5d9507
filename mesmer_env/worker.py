"""Segment a slide's nuclei with DeepCell Mesmer; launched by Dagster through Pipes.

Runs in the Mesmer environment (Python 3.10, TensorFlow 2.8, deepcell 0.12, zarr 2), which cannot
import the project. The Dagster side (dagster_project/defs/nuclei/mesmer.py) prepares a zarr v2
exchange store and passes its paths as Pipes extras:

    inputs      zarr v2 group with array `image` (stain, y, x): the nuclear stain, then the
                membrane stain if any (zarr 2 cannot read the slide's zarr v3 store)
    labels      where to write a zarr v2 group with array `labels` int32 (y, x), 0 = background
    slide_id, mpp, tile_px, halo_px, batch_size
    weights_source  "path" | "deepcell-cache" | "deepcell-download";  model_path
    postprocess     deepcell `postprocess_kwargs_nuclear` overrides (e.g. maxima_threshold)

Each tile core is segmented with `halo_px` of context (Mesmer.predict, compartment="nuclear",
image_mpp = the slide's mpp). A nucleus belongs to the tile whose core holds its centroid and is
written whole, so a nucleus crossing a tile border is neither split nor duplicated (when the
halo is wider than a nucleus). Memory holds one window. Results go back as a Pipes custom message.

The same script runs under PipesK8sClient (see docs/nuclei.md): it only needs the two paths on a
volume shared with the Dagster run.
"""

from __future__ import annotations

import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import zarr  # noqa: E402
from dagster_pipes import open_dagster_pipes  # noqa: E402

MODEL_MPP = 0.5
MODEL_TILE_PX = 256


def tile_grid(height, width, tile_px, halo_px):
    """(core y0, x0, y1, x1, window y0, x0, y1, x1), row-major; cores cover the slide once."""
    for y0 in range(0, height, tile_px):
        for x0 in range(0, width, tile_px):
            y1, x1 = min(y0 + tile_px, height), min(x0 + tile_px, width)
            yield (y0, x0, y1, x1, max(0, y0 - halo_px), max(0, x0 - halo_px),
                   min(height, y1 + halo_px), min(width, x1 + halo_px))


def load_mesmer(weights_source, model_path, log):
    import tensorflow as tf
    from deepcell.applications import Mesmer

    if weights_source == "deepcell-download":
        log.info("Loading Mesmer through deepcell's download (DEEPCELL_ACCESS_TOKEN).")
        return Mesmer()
    log.info(f"Loading the Mesmer model from {model_path}.")
    return Mesmer(model=tf.keras.models.load_model(model_path, compile=False))


def pad_for_model(window, mpp):
    """Reflect-pad a window axis too short to give one 256 px model tile at 0.5 µm/px.

    deepcell pads a small image itself only when both axes are short; a window short in one
    axis alone (the slide's last column or row of tiles) would reach the model at a wrong size.
    """
    minimum = math.ceil(MODEL_TILE_PX * MODEL_MPP / mpp) + 2
    pads = [(0, 0)] + [(0, max(0, minimum - n)) for n in window.shape[1:]]
    if all(p == (0, 0) for p in pads):
        return window
    mode = "reflect" if min(window.shape[1:]) > 1 else "edge"
    return np.pad(window, pads, mode=mode)


def segment_window(app, window, mpp, batch_size, postprocess):
    """int32 labels (h, w) for a (stain, h, w) window; the membrane is zeros when absent."""
    h, w = window.shape[1:]
    if window.shape[0] == 1:
        window = np.concatenate([window, np.zeros_like(window)])
    padded = pad_for_model(window, mpp)
    image = np.moveaxis(padded, 0, -1)[None].astype(np.float32)
    labels = app.predict(image, batch_size=batch_size, image_mpp=mpp, compartment="nuclear",
                         postprocess_kwargs_nuclear=postprocess)
    return np.asarray(labels[0, :h, :w, 0], dtype=np.int32)


def owned_nuclei(labels, core):
    """Labels whose centroid lies in `core` (slices in window coordinates), and how many of
    them touch the window's edge (cut by a halo narrower than the nucleus)."""
    n = int(labels.max())
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    yy, xx = np.indices(labels.shape)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)
    cy = np.bincount(flat, yy.ravel(), minlength=n + 1) / np.maximum(area, 1)
    cx = np.bincount(flat, xx.ravel(), minlength=n + 1) / np.maximum(area, 1)
    present = area > 0
    present[0] = False
    ys, xs = core
    owned = present & (cy >= ys.start) & (cy < ys.stop) & (cx >= xs.start) & (cx < xs.stop)
    ids = np.flatnonzero(owned)
    edge = np.zeros(n + 1, dtype=bool)
    for border in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        edge[border] = True
    return ids, int(np.count_nonzero(edge[ids]))


def run(pipes):
    p = pipes.extras
    started = time.perf_counter()
    source = zarr.open_group(p["inputs"], mode="r")
    image = source["image"]
    _, height, width = image.shape
    tile_px, halo_px, mpp = int(p["tile_px"]), int(p["halo_px"]), float(p["mpp"])
    out = zarr.open_group(p["labels"], mode="w")
    labels_out = out.create_dataset(
        "labels", shape=(height, width), chunks=(min(tile_px, height), min(tile_px, width)),
        dtype="int32", fill_value=0)
    app = load_mesmer(p["weights_source"], p.get("model_path"), pipes.log)
    loaded = time.perf_counter()
    next_label, n_tiles, n_cut, n_conflict_px = 0, 0, 0, 0
    for y0, x0, y1, x1, ry0, rx0, ry1, rx1 in tile_grid(height, width, tile_px, halo_px):
        n_tiles += 1
        window = np.asarray(image[:, ry0:ry1, rx0:rx1], dtype=np.float32)
        if not window[0].any():
            continue
        labels = segment_window(app, window, mpp, int(p["batch_size"]), p.get("postprocess", {}))
        core = (slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))
        ids, cut = owned_nuclei(labels, core)
        n_cut += cut
        if ids.size == 0:
            continue
        relabel = np.zeros(int(labels.max()) + 1, dtype=np.int32)
        relabel[ids] = np.arange(next_label + 1, next_label + 1 + ids.size, dtype=np.int32)
        mine = relabel[labels]
        current = labels_out[ry0:ry1, rx0:rx1]
        free = current == 0
        n_conflict_px += int(np.count_nonzero((mine > 0) & ~free))
        labels_out[ry0:ry1, rx0:rx1] = np.where(free & (mine > 0), mine, current)
        next_label += ids.size
        pipes.log.debug(f"tile ({y0}, {x0}): {ids.size} nuclei")
    import deepcell
    import tensorflow as tf

    summary = {
        "slide_id": p.get("slide_id"),
        "nucleus_count": next_label,
        "tiles": n_tiles,
        "nuclei_cut_by_halo": n_cut,
        "overlap_px_dropped": n_conflict_px,
        "height_px": height,
        "width_px": width,
        "mpp": mpp,
        "model_load_s": round(loaded - started, 3),
        "segment_s": round(time.perf_counter() - loaded, 3),
        "weights_source": p["weights_source"],
        "deepcell_version": deepcell.__version__,
        "tensorflow_version": tf.__version__,
    }
    out.attrs.update(summary)
    pipes.log.info(f"Mesmer found {next_label} nuclei in {n_tiles} tiles.")
    pipes.report_custom_message(summary)


def main():
    with open_dagster_pipes() as pipes:
        run(pipes)


if __name__ == "__main__":
    main()
