"""Inference on any slide, labelled or not: predicted cell type of every nucleus (Parquet, in
the DuckDB catalog as `nucleus_inference`), a whole-slide map and a QuPath GeoJSON export."""

import base64

import dagster as dg
import numpy as np
import polars as pl

from dagster_project.defs.inference import wiring
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from pipelines.evaluate import frame_markdown
from pipelines.inference import InferenceParams
from pipelines.train.loop import torch_threads
from pipelines.train.predict import probability_columns
from storage.parquet_dataset import read_slide_partition


class InferenceConfig(dg.Config):
    """`fold`: use that fold's model alone (None: the mean of the probabilities of every
    trained fold). `device`: auto (cuda, mps, cpu), or one of them. `cpu_threads`: torch
    threads on CPU (0: torch's default, every core; the `gpu` pool runs one slide at a time)."""

    fold: int | None = None
    device: str = "auto"
    batch_size: int = 1024
    cpu_threads: int = 0


@dg.asset(
    partitions_def=slide_partitions, group_name="inference", pool="gpu",
    deps=[dg.AssetDep("classifier", partition_mapping=dg.AllPartitionMapping()),
          "virtual_he", "nucleus_mask", "nucleus_features"],
    kinds={"pytorch", "parquet"},
    check_specs=[dg.AssetCheckSpec("one_prediction_per_nucleus", asset="nucleus_inference")],
)
def nucleus_inference(
    context: dg.AssetExecutionContext, config: InferenceConfig, data_root: DataRoot,
    label_settings: LabelSettings,
) -> dg.MaterializeResult:
    """Predicted cell type and class probabilities of every nucleus of the slide from its
    virtual H&E patches; a map PNG and exports/qupath/<slide_id>.geojson beside them."""
    layout, slide_id = data_root.layout, context.partition_key
    models = wiring.load_models(layout, config.fold)
    params = InferenceParams(batch_size=config.batch_size, device=config.device)
    with torch_threads(config.cpu_threads):
        out = wiring.infer_slide(layout, slide_id, models, params,
                                 label_settings.catalog_path(layout))
    context.log.info(f"{slide_id}: {out.frame.height} nuclei, {models.label}, "
                     f"{out.seconds['total']:.1f} s on {out.device}")
    preview = base64.b64encode(out.map_bytes).decode("ascii")
    return dg.MaterializeResult(
        metadata={
            "n_nuclei": out.frame.height, "models": models.label, "device": out.device,
            "per_class": dg.MetadataValue.md(frame_markdown(out.counts)),
            "seconds": {k: round(v, 2) for k, v in out.seconds.items()},
            "polygons": out.n_polygons, "points": out.n_points,
            "path": dg.MetadataValue.path(str(out.parquet)),
            "qupath_geojson": dg.MetadataValue.path(str(out.geojson)),
            "map": dg.MetadataValue.path(str(out.map_png)),
            "preview": dg.MetadataValue.md(f"![map](data:image/png;base64,{preview})"),
        },
        check_results=[_one_prediction_per_nucleus(layout, slide_id)],
    )


def _one_prediction_per_nucleus(layout, slide_id: str) -> dg.AssetCheckResult:
    """Read back: every nucleus of nucleus_features once, probabilities summing to 1."""
    stored = read_slide_partition(layout.inference_dir, slide_id)
    nuclei = read_slide_partition(layout.features_dir, slide_id)["nucleus_id"]
    same = stored.height == nuclei.len() and stored["nucleus_id"].n_unique() == stored.height \
        and bool(stored["nucleus_id"].is_in(nuclei.implode()).all())
    sums = stored.select(pl.sum_horizontal(probability_columns())).to_series().to_numpy()
    worst = float(np.abs(sums - 1).max()) if len(sums) else 0.0
    return dg.AssetCheckResult(
        check_name="one_prediction_per_nucleus", passed=bool(same and worst < 1e-3),
        metadata={"nuclei": nuclei.len(), "predictions": stored.height,
                  "max_abs_sum_minus_1": worst},
    )
