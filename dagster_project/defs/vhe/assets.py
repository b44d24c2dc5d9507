"""Virtual H&E per slide, nucleus patches into the patch store, and the per-class gallery."""

import dagster as dg

from dagster_project.automation import COHORT_VIEW, SLIDE_STAGE
from dagster_project.defs.metadata import png_md
from dagster_project.defs.vhe import wiring
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from storage.tiles import DEFAULT_TILE_PX


class VirtualHEConfig(dg.Config):
    """backend: "beer_lambert" (no training) or "cyclegan" (needs the cyclegan_model asset).
    absorption_table: the Beer-Lambert stain -> dye table, "histology" or "marker_tinted"."""

    backend: str = "beer_lambert"
    tile_px: int = DEFAULT_TILE_PX
    device: str = "auto"
    missing_stains: str = "error"
    absorption_table: str = "histology"


@dg.asset(
    partitions_def=slide_partitions, deps=["slide_image"], group_name="virtual_he",
    automation_condition=SLIDE_STAGE,
    check_specs=[dg.AssetCheckSpec("looks_like_he", asset="virtual_he")],
)
def virtual_he(
    context: dg.AssetExecutionContext, config: VirtualHEConfig, data_root: DataRoot
) -> dg.MaterializeResult:
    """RGB virtual H&E of the slide on its own grid plus a 0.5 µm/px level (storage/vhe_store)."""
    layout, slide_id = data_root.layout, context.partition_key
    if config.backend not in wiring.BACKENDS:
        raise dg.Failure(f"Unknown virtual H&E backend {config.backend!r}: beer_lambert or "
                         "cyclegan.")
    backend = wiring.backend_for(layout, config.backend, config.absorption_table,
                                 config.missing_stains, config.device)
    out = wiring.render(layout, slide_id, config.backend, backend, config.tile_px)
    summary = out.summary
    r, g, b = summary.mean_rgb
    return dg.MaterializeResult(
        metadata={
            "backend": out.backend, "tiles": summary.n_tiles,
            "megapixels_per_s": round(summary.megapixels_per_s, 2),
            "mean_rgb": [round(v, 1) for v in summary.mean_rgb],
            "preview": png_md(out.preview_png),
            "preview_path": dg.MetadataValue.path(str(out.preview_path)),
        },
        check_results=[dg.AssetCheckResult(
            check_name="looks_like_he", passed=bool(min(r, g, b) > 60 and g < min(r, b)),
            metadata={"mean_rgb": [round(v, 1) for v in summary.mean_rgb]},
            description="H&E is light overall with green absorbed most (pink-purple).",
        )],
    )


@dg.asset(
    partitions_def=slide_partitions, deps=["virtual_he", "nucleus_labels", "nucleus_features"],
    group_name="virtual_he", automation_condition=SLIDE_STAGE,
    check_specs=[dg.AssetCheckSpec("every_labelled_nucleus_has_a_patch", asset="nucleus_patches")],
)
def nucleus_patches(
    context: dg.AssetExecutionContext, data_root: DataRoot
) -> dg.MaterializeResult:
    """41x41 RGB patches at 0.5 µm/px of every labelled nucleus, in the patch store."""
    out = wiring.write_patches(data_root.layout, context.partition_key)
    summary = out.summary
    return dg.MaterializeResult(
        metadata={
            "patches": summary.n_patches, "edge_patches": summary.n_edge,
            "patches_per_s": round(summary.patches_per_s), "per_class": out.per_class,
        },
        check_results=[dg.AssetCheckResult(
            check_name="every_labelled_nucleus_has_a_patch",
            passed=bool(out.n_stored == out.n_labelled),
            metadata={"labelled": out.n_labelled, "stored": out.n_stored},
        )],
    )


@dg.asset(
    deps=[dg.AssetDep("nucleus_patches", partition_mapping=dg.AllPartitionMapping())],
    group_name="virtual_he", automation_condition=COHORT_VIEW,
)
def patch_gallery(data_root: DataRoot) -> dg.MaterializeResult:
    """Per class, virtual H&E patches beside their key MxIF stain in green (paper Fig. 1)."""
    out = wiring.gallery(data_root.layout)
    return dg.MaterializeResult(metadata={
        "classes": out.n_classes, "seconds": round(out.seconds, 2),
        "gallery": png_md(out.png), "path": dg.MetadataValue.path(str(out.path)),
    })
