"""Real H&E slides (manifest modality `he`): ingest, nuclei, features and classification.

One `he_slides` partition per H&E slide of the manifest (registered by slide_manifest). The
chain never meets the MxIF cohort's thresholds, labels, folds or training: every output lies
under `layout.he`, and predictions are the catalog's `he_nucleus_inference` view.

    he_slide_image ─ he_nucleus_mask ─ he_nucleus_features ─ he_nucleus_inference
    (RGB store,      (he-classical |   (shape, mean          (trained folds, harmonised
     vhe layout)      import | ...)     hematoxylin/eosin)    patches → Parquet, map, GeoJSON)
"""

from collections.abc import Iterator
from typing import Literal

import dagster as dg

from dagster_project.automation import INFERENCE, NEW_SLIDE, SLIDE_STAGE
from dagster_project.defs.he import wiring
from dagster_project.defs.inference import wiring as inference
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.defs.metadata import png_md
from dagster_project.partitions import he_slide_partitions
from dagster_project.resources import DataRoot
from pipelines.evaluate import frame_markdown
from pipelines.quantify import feature_checks
from pipelines.segment.he import he_backend_names
from storage.layout import DataLayout
from storage.parquet_dataset import read_slide_partition
from storage.tiles import DEFAULT_TILE_PX

TISSUE_CHECK = dg.AssetCheckSpec("has_tissue", asset="he_slide_image")
FEATURE_CHECKS = ("nucleus_count_positive", "no_nan_intensities", "plausible_areas")


class HESlideImageConfig(dg.Config):
    """tile_px: window edge read and written at a time; force: re-ingest a current store."""

    tile_px: int = DEFAULT_TILE_PX
    force: bool = False


@dg.asset(key="he_slide_image", partitions_def=he_slide_partitions, deps=["slide_manifest"],
          group_name="he", kinds={"zarr"}, automation_condition=NEW_SLIDE,
          check_specs=[TISSUE_CHECK])
def he_slide_image(context: dg.AssetExecutionContext, config: HESlideImageConfig,
                   data_root: DataRoot) -> dg.MaterializeResult:
    """The slide's RGB streamed into `layout.he.vhe_zarr(slide_id)`: its own grid + 0.5 µm/px."""
    out = wiring.ingest(data_root.layout, context.partition_key, config.tile_px, config.force)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(out.data_version),
        metadata={
            "shape": str((out.height_px, out.width_px, 3)), "mpp": out.mpp,
            "mpp_source": out.mpp_source, "format": out.format,
            "tissue_fraction": round(out.tissue_fraction, 4),
            "mean_tissue_rgb": [round(v, 1) for v in out.mean_tissue_rgb],
            "reused_unchanged_store": out.reused, "seconds": round(out.seconds, 2),
            "content_sha256": out.content_sha256, "path": dg.MetadataValue.path(str(out.path)),
            "preview": png_md(out.preview_png),
        },
        check_results=[dg.AssetCheckResult(
            check_name="has_tissue", passed=out.tissue_fraction > 0.001,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"tissue_fraction": round(out.tissue_fraction, 4)},
            description=None if out.tissue_fraction > 0.001 else
            f"Slide {context.partition_key!r} shows (almost) no tissue: it will have no nuclei.",
        )],
    )


class HENucleusMaskConfig(dg.Config):
    """backend: a registered H&E backend (he-classical, he-learned, ...) or `import` (masks, or
    QuPath GeoJSON detections, at import_path with `{slide_id}`, relative to the data root).
    settings: the backend's own settings (he-classical: lengths in µm; he-learned: halo_um, tta).
    model_path: he-learned's checkpoint folder; default the data root's models/he_learned,
    which he_nucleus_model writes."""

    backend: str = "he-classical"
    tile_px: int = DEFAULT_TILE_PX
    halo_px: int | None = None
    settings: dict[str, float] = {}  # noqa: RUF012 (dagster copies config defaults)
    model_path: str | None = None
    device: str = "auto"
    import_path: str = "imported_masks/{slide_id}.tif"
    mask_plane: int | None = None
    binary_mask: Literal["refuse", "connected_components"] = "refuse"


@dg.asset(key="he_nucleus_mask", partitions_def=he_slide_partitions, deps=["he_slide_image"],
          group_name="he", kinds={"python", "zarr"}, automation_condition=SLIDE_STAGE)
def he_nucleus_mask(context: dg.AssetExecutionContext, config: HENucleusMaskConfig,
                    data_root: DataRoot) -> dg.MaterializeResult:
    """int32 nucleus labels of the H&E slide on its grid (layout.he.mask_zarr), tile by tile."""
    layout, slide_id = data_root.layout, context.partition_key
    if config.backend not in he_backend_names():
        raise dg.Failure(f"Unknown H&E backend {config.backend!r}; choose one of "
                         f"{', '.join(he_backend_names())}.")
    settings: dict = dict(config.settings)
    if config.model_path:
        settings["model_path"] = config.model_path
    if config.device != "auto":
        settings["device"] = config.device
    backend = wiring.backend_for(layout, slide_id, config.backend, settings,
                                 config.import_path, config.mask_plane)
    run = wiring.segment(layout, slide_id, backend, config.tile_px, config.halo_px,
                         config.binary_mask)
    preview = wiring.outline_preview(layout, slide_id)
    return dg.MaterializeResult(metadata={
        "n_nuclei": run.n_nuclei, "backend": config.backend,
        "details": dg.MetadataValue.json({k: v for k, v in run.details.items() if v is not None}),
        "preview": dg.MetadataValue.path(str(preview)),
        "preview_md": png_md(preview.read_bytes()),
    })


@dg.asset(key="he_nucleus_features", partitions_def=he_slide_partitions,
          deps=["he_nucleus_mask"], group_name="he", kinds={"python", "parquet"},
          automation_condition=SLIDE_STAGE,
          check_specs=[dg.AssetCheckSpec(n, asset="he_nucleus_features")
                       for n in FEATURE_CHECKS])
def he_nucleus_features(context: dg.AssetExecutionContext,
                        data_root: DataRoot) -> dg.MaterializeResult:
    """One row per nucleus: id, centroid, box, shape, mean hematoxylin and eosin."""
    frame, path = wiring.features(data_root.layout, context.partition_key, 1024)
    return dg.MaterializeResult(
        metadata={"n_nuclei": frame.height, "path": dg.MetadataValue.path(str(path))},
        check_results=[dg.AssetCheckResult(check_name=name, passed=bool(ok), metadata=details,
                                           severity=dg.AssetCheckSeverity.WARN)
                       for name, (ok, details) in feature_checks(frame).items()],
    )


class HEInferenceConfig(dg.Config):
    """harmonise: none | reinhard | macenko, towards the classifier's virtual H&E patches.
    classifier_root: the data root whose trained folds (models/) and patches classify these
    slides (empty: this data root). fold, device, batch_size, cpu_threads: as nucleus_inference."""

    harmonise: Literal["none", "reinhard", "macenko"] = "reinhard"
    classifier_root: str = ""
    fold: int | None = None
    device: str = "auto"
    batch_size: int = 1024
    cpu_threads: int = 0


HE_INFERENCE_KEY = dg.AssetKey("he_nucleus_inference")


@dg.multi_asset(
    name="he_nucleus_inference", partitions_def=he_slide_partitions, pool="gpu",
    specs=[dg.AssetSpec(
        HE_INFERENCE_KEY, group_name="he", kinds={"pytorch", "parquet"}, skippable=True,
        deps=[dg.AssetDep("classifier", partition_mapping=dg.AllPartitionMapping()),
              "he_slide_image", "he_nucleus_mask", "he_nucleus_features"],
        automation_condition=INFERENCE,
        description="Cell type and class probabilities of every nucleus of a real H&E slide "
        "from the trained folds; he/nucleus_inference, a map and he/exports/qupath/<id>.geojson."
        " Skipped, with the reason, while no classifier fold is trained.")],
)
def he_nucleus_inference(
    context: dg.AssetExecutionContext, config: HEInferenceConfig, data_root: DataRoot,
    label_settings: LabelSettings,
) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
    """Predict every nucleus of the slide (harmonised to the virtual H&E), write the outputs."""
    from pipelines.inference import InferenceParams  # torch loads in this step only
    from pipelines.torch_device import torch_threads

    layout, slide_id = data_root.layout, context.partition_key
    models_layout = DataLayout(config.classifier_root) if config.classifier_root else layout
    waiting = inference.waiting_for_classifier(models_layout, config.fold)
    if waiting:
        context.log.warning(f"{slide_id}: he_nucleus_inference skipped. {waiting}")
        yield dg.AssetObservation(asset_key=HE_INFERENCE_KEY, partition=slide_id,
                                  metadata={"skipped": waiting})
        return
    models = inference.load_models(models_layout, config.fold)
    features = read_slide_partition(layout.he.features_dir, slide_id)
    harmoniser, note = wiring.harmoniser_for(layout, slide_id, config.harmonise, features,
                                             models_layout)
    if note:
        context.log.warning(note)
    with torch_threads(config.cpu_threads):
        out = inference.infer_slide(
            layout.he, slide_id, models, InferenceParams(config.batch_size, config.device),
            label_settings.catalog_path(layout), wiring.catalog_source(layout), harmoniser)
    yield dg.MaterializeResult(metadata={
        "n_nuclei": out.frame.height, "models": models.label, "device": out.device,
        "harmonise": harmoniser.method if harmoniser else "none",
        "per_class": dg.MetadataValue.md(frame_markdown(out.counts)),
        "seconds": {k: round(v, 2) for k, v in out.seconds.items()},
        "polygons": out.n_polygons, "points": out.n_points,
        "path": dg.MetadataValue.path(str(out.parquet)),
        "qupath_geojson": dg.MetadataValue.path(str(out.geojson)),
        "preview": png_md(out.map_bytes),
    })
