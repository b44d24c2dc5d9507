"""Inference on one demo-sized slide: streamed, batched prediction against predicting each
nucleus on its own, and the stage times of the whole asset (5-fold ensemble).

Run: python -m pytest tests/benchmarks/test_bench_inference.py -s
One synthetic-cohort slide (1024 x 1024 px at 0.32 µm/px, about 900 nuclei), its true mask,
nucleus_features, a Beer-Lambert virtual H&E, and five randomly initialised fold classifiers
saved as checkpoints. The peer reads each nucleus's window from the virtual H&E store, resamples
it to 0.5 µm/px and predicts that one patch (batch of 1), as a per-object loop would.
"""

from __future__ import annotations

import os
import time

import dagster as dg
import numpy as np
import torch

from dagster_project.defs.inference import wiring
from dagster_project.defs.vhe.assets import virtual_he
from dagster_project.resources import DataRoot
from pipelines.inference import InferenceParams, plan_inference, predict_slide
from pipelines.patches import PATCH_PX, ResampleGrid, resample_rgb
from pipelines.quantify import quantify_slide
from pipelines.synthetic import CohortParams
from pipelines.synthetic.cohort import plan_cohort, simulate_slide
from pipelines.train.predict import predict_probabilities
from storage.layout import DataLayout
from storage.mask_store import create_mask, open_mask
from storage.parquet_dataset import write_slide_partition
from storage.slide_store import SlideInfo, create_slide, open_slide
from storage.vhe_store import open_vhe
from tests.inference_fixtures import fold_model, save_fold

PEER_NUCLEI = 150


def _data_root(root) -> tuple[DataLayout, str]:
    layout = DataLayout(root)
    params = CohortParams()
    spec = plan_cohort(params)[0]
    sim = simulate_slide(spec, params)
    h, w = sim.labels.shape
    info = SlideInfo(sim.slide_id, tuple(sim.stains), sim.mpp, h, w, str(sim.image.dtype))
    with create_slide(layout.slide_zarr(sim.slide_id), info) as writer:
        writer.write(0, 0, sim.image)
    with create_mask(layout.mask_zarr(sim.slide_id), sim.slide_id, h, w) as writer:
        writer.write(0, 0, sim.labels)
    write_slide_partition(layout.features_dir, sim.slide_id, quantify_slide(
        open_slide(layout.slide_zarr(sim.slide_id)), open_mask(layout.mask_zarr(sim.slide_id))))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", [sim.slide_id])
    assert dg.materialize([virtual_he], instance=instance, partition_key=sim.slide_id,
                          resources={"data_root": DataRoot(root=str(root))}).success
    for fold in range(5):
        save_fold(layout, fold, fold_model(fold))
    return layout, sim.slide_id


def _per_nucleus(vhe, features, model) -> np.ndarray:
    """The peer: one window read, one resampling and one forward pass per nucleus."""
    grid = ResampleGrid.between(vhe.mpp, 0.5)
    half = int(np.ceil((PATCH_PX / 2 + 2) * grid.scale))
    out = []
    for cy, cx in zip(features["centroid_y_px"], features["centroid_x_px"], strict=True):
        y0 = max(0, (int(cy) - half) // grid.p * grid.p)
        x0 = max(0, (int(cx) - half) // grid.p * grid.p)
        window = vhe.read(y0, x0, min(vhe.height_px, int(cy) + half + grid.p),
                          min(vhe.width_px, int(cx) + half + grid.p))
        small = resample_rgb(window, grid)
        py, px = grid.to_dst(np.array([cy]))[0] - y0 * grid.q // grid.p, \
            grid.to_dst(np.array([cx]))[0] - x0 * grid.q // grid.p
        p = PATCH_PX // 2
        patch = np.pad(small, ((p, p), (p, p), (0, 0)), mode="reflect")[py : py + PATCH_PX,
                                                                         px : px + PATCH_PX]
        out.append(predict_probabilities(model, patch[None], "cpu"))
    return np.concatenate(out)


def test_bench_inference(tmp_path) -> None:
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    layout, slide_id = _data_root(tmp_path)
    models = wiring.load_models(layout, None)
    vhe, features = wiring.open_inputs(layout, slide_id)
    params = InferenceParams(device="cpu")
    plan = plan_inference(slide_id, features, vhe.height_px, vhe.width_px, vhe.mpp, params)

    ours = predict_slide(vhe.read, plan, models.models[:1], params)
    ours_rate = plan.n_patches / ours.seconds
    subset = features.head(PEER_NUCLEI)
    t0 = time.perf_counter()
    _per_nucleus(vhe, subset, models.models[0])
    peer_rate = PEER_NUCLEI / (time.perf_counter() - t0)
    print(f"\n{plan.n_patches} nuclei, {threads} torch threads, one fold model")
    print(f"ours (tiles, batches of {params.batch_size}): {ours_rate:8.1f} nuclei/s "
          f"(model {ours.model_seconds:.1f} s of {ours.seconds:.1f} s)")
    print(f"peer (one nucleus at a time, {PEER_NUCLEI} nuclei): {peer_rate:8.1f} nuclei/s")
    print(f"ratio ours/peer: {ours_rate / peer_rate:.1f}x")

    out = wiring.infer_slide(layout, slide_id, models, params, layout.catalog_db)
    s = out.seconds
    print(f"asset, mean of 5 folds: predict {s['predict']:.1f} s (model {s['model']:.1f} s, "
          f"{s['patches_per_s']:.0f} nuclei/s), map {s['map']:.1f} s, GeoJSON {s['geojson']:.2f} s "
          f"({out.n_polygons} polygons, {out.n_points} points, "
          f"{out.geojson.stat().st_size / 1e3:.0f} kB), total {s['total']:.1f} s")
    assert out.frame.height == features.height == out.n_polygons + out.n_points
    assert open_vhe(layout.vhe_zarr(slide_id)).slide_id == slide_id
