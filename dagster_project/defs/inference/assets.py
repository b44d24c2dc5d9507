"""Inference on any slide, labelled or not: predicted cell type of every nucleus (Parquet, in
the DuckDB catalog as `nucleus_inference`), a whole-slide map and a QuPath GeoJSON export.

Before any classifier fold is trained (a new lab's first slides) the asset is skipped, not
failed: the slide's run stays green, and the `INFERENCE` automation condition starts it once a
fold exists."""

import base64
from collections.abc import Iterator

import dagster as dg
import numpy as np
import polars as pl

from dagster_project.automation import INFERENCE
from dagster_project.defs.inference import wiring
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from pipelines.evaluate import frame_markdown
from storage.parquet_dataset import read_slide_partition


class InferenceConfig(dg.Config):
    """`fold`: use that fold's model alone. Unset, with `held_out` (the default), a slide of the
    cohort's fold split is predicted by the fold that held its patient out, so its map and
    QuPath classes are test predictions, not training ones, and any other slide by the mean of
    the probabilities of every trained fold; `held_out: false` averages every trained fold for
    all slides. `device`: auto (cuda, mps, cpu), or one of them. `cpu_threads`: torch
    threads on CPU (0: torch's default, every core)."""

    fold: int | None = None
    held_out: bool = True
    device: str = "auto"
    batch_size: int = 1024
    cpu_threads: int = 0


INFERENCE_KEY = dg.AssetKey("nucleus_inference")
ONE_PREDICTION = dg.AssetCheckSpec("one_prediction_per_nucleus", asset=INFERENCE_KEY)


# A multi_asset for its skippable spec: a step without a trained fold yields nothing, and
# `can_subset` makes the embedded check optional with it. No pool: a slide's inference holds one
# ResNet-18 per fold (45 MB each) and batches of 41 x 41 patches, so slides may share a GPU or
# the CPU cores; the run queue's limit bounds how many run at once. Training keeps the `gpu` pool.
@dg.multi_asset(
    name="nucleus_inference", partitions_def=slide_partitions, can_subset=True,
    specs=[dg.AssetSpec(
        INFERENCE_KEY, group_name="inference", kinds={"pytorch", "parquet"}, skippable=True,
        deps=[dg.AssetDep("classifier", partition_mapping=dg.AllPartitionMapping()),
              "virtual_he", "nucleus_mask", "nucleus_features"],
        automation_condition=INFERENCE,
        description="Predicted cell type and class probabilities of every nucleus of the "
        "slide from its virtual H&E patches; a map PNG and exports/qupath/<slide_id>.geojson "
        "beside them. Skipped, with the reason, while no classifier fold is trained.")],
    check_specs=[ONE_PREDICTION],
)
def nucleus_inference(
    context: dg.AssetExecutionContext, config: InferenceConfig, data_root: DataRoot,
    label_settings: LabelSettings,
) -> Iterator[dg.MaterializeResult | dg.AssetObservation | dg.AssetCheckResult]:
    """Predict the slide's nuclei (or, with only the check selected, check what is stored);
    without a trained fold and no fold chosen, an observation says why nothing was written."""
    from pipelines.inference import InferenceParams  # torch loads in this step only
    from pipelines.torch_device import torch_threads

    layout, slide_id = data_root.layout, context.partition_key
    if INFERENCE_KEY not in context.selected_asset_keys:
        yield _one_prediction_per_nucleus(layout, slide_id)
        return
    waiting = wiring.waiting_for_classifier(layout, config.fold)
    if waiting:
        context.log.warning(f"{slide_id}: nucleus_inference skipped. {waiting}")
        yield dg.AssetObservation(asset_key=INFERENCE_KEY, partition=slide_id,
                                  metadata={"skipped": waiting})
        return
    models = wiring.load_slide_models(layout, slide_id, config.fold, config.held_out)
    params = InferenceParams(batch_size=config.batch_size, device=config.device)
    with torch_threads(config.cpu_threads):
        out = wiring.infer_slide(layout, slide_id, models, params,
                                 label_settings.catalog_path(layout))
    context.log.info(f"{slide_id}: {out.frame.height} nuclei, {models.label}, "
                     f"{out.seconds['total']:.1f} s on {out.device}")
    preview = base64.b64encode(out.map_bytes).decode("ascii")
    yield dg.MaterializeResult(
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
        check_results=[_one_prediction_per_nucleus(layout, slide_id)]
        if ONE_PREDICTION.key in context.selected_asset_check_keys else [],
    )


def _one_prediction_per_nucleus(layout, slide_id: str) -> dg.AssetCheckResult:
    """Read back: every nucleus of nucleus_features once, probabilities summing to 1."""
    from pipelines.train.predict import probability_columns

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
