"""Virtual H&E per slide, nucleus patches into the patch store, and the per-class gallery."""

import base64
import time

import dagster as dg
import numpy as np

from dagster_project.automation import COHORT_VIEW, SLIDE_STAGE
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from pipelines.cell_types import CELL_TYPES
from pipelines.patches import (
    PATCH_MPP,
    PATCH_PX,
    PatchParams,
    ResampleGrid,
    extract_patches,
    patch_table,
    plan_patches,
)
from pipelines.vhe.beer_lambert import BeerLambertBackend, BeerLambertParams, absorption_table
from pipelines.vhe.gallery import KEY_STAINS, gallery_png, green, thumbnail_png
from pipelines.vhe.streaming import StreamParams, render_slide
from storage.atomic import atomic_write_bytes
from storage.parquet_dataset import read_slide_partition
from storage.patch_store import PatchStore, create_slide_patches, ensure_store
from storage.slide_store import open_slide
from storage.tiles import DEFAULT_TILE_PX
from storage.vhe_store import VirtualHELevel, create_vhe, open_vhe


class VirtualHEConfig(dg.Config):
    """backend: "beer_lambert" (no training) or "cyclegan" (needs the cyclegan_model asset).
    absorption_table: the Beer-Lambert stain -> dye table, "histology" or "marker_tinted"."""

    backend: str = "beer_lambert"
    tile_px: int = DEFAULT_TILE_PX
    device: str = "auto"
    missing_stains: str = "error"
    absorption_table: str = "histology"


def _backend(config: VirtualHEConfig, data_root: DataRoot):
    if config.backend == "beer_lambert":
        table = absorption_table(config.absorption_table)
        return BeerLambertBackend(BeerLambertParams(table, missing=config.missing_stains))
    if config.backend == "cyclegan":
        from pipelines.vhe.cyclegan.infer import load_backend

        return load_backend(data_root.layout.models_dir / "cyclegan", config.device)
    raise dg.Failure(f"Unknown virtual H&E backend {config.backend!r}: beer_lambert or cyclegan.")


def _png_md(png: bytes) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"![preview](data:image/png;base64,{encoded})")


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
    slide = open_slide(layout.slide_zarr(slide_id))
    info, grid = slide.info, ResampleGrid.between(slide.info.mpp, PATCH_MPP)
    tile_px = grid.align(config.tile_px)
    levels = [
        VirtualHELevel(info.mpp, info.height_px, info.width_px, tile_px),
        VirtualHELevel(grid.dst_mpp, grid.dst_size(info.height_px), grid.dst_size(info.width_px),
                       tile_px * grid.q // grid.p),
    ]
    with create_vhe(layout.vhe_zarr(slide_id), slide_id, levels, config.backend) as writer:
        summary, fitted = render_slide(
            slide, _backend(config, data_root), writer.write, StreamParams(tile_px=tile_px), grid
        )
        writer.update_attrs({"backend": fitted.name, "params": fitted.params()})
    preview = thumbnail_png(open_vhe(layout.vhe_zarr(slide_id)).read(level=1))
    path = atomic_write_bytes(layout.figures_dir("vhe") / f"{slide_id}.png", preview)
    r, g, b = summary.mean_rgb
    return dg.MaterializeResult(
        metadata={
            "backend": fitted.name, "tiles": summary.n_tiles,
            "megapixels_per_s": round(summary.megapixels_per_s, 2),
            "mean_rgb": [round(v, 1) for v in summary.mean_rgb],
            "preview": _png_md(preview), "preview_path": dg.MetadataValue.path(str(path)),
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
    layout, slide_id = data_root.layout, context.partition_key
    table = patch_table(
        read_slide_partition(layout.labels_dir, slide_id),
        read_slide_partition(layout.features_dir, slide_id), slide_id,
    )
    vhe = open_vhe(layout.vhe_zarr(slide_id))
    plan = plan_patches(
        slide_id, table["nucleus_id"].to_numpy(), table["class_index"].to_numpy(),
        table["centroid_y_px"].to_numpy(), table["centroid_x_px"].to_numpy(),
        vhe.height_px, vhe.width_px, vhe.mpp,
    )
    ensure_store(layout.patch_store, PATCH_PX, PATCH_MPP, CELL_TYPES)
    with create_slide_patches(
        layout.patch_store, slide_id, plan.nucleus_id, plan.class_index, plan.edge, PATCH_PX,
        attrs={"source": str(layout.vhe_zarr(slide_id)), "vhe_backend": vhe.backend},
    ) as writer:
        summary = extract_patches(vhe.read, plan, writer.write_block, PatchParams())
    stored = PatchStore(layout.patch_store).slide(slide_id)
    counts = {CELL_TYPES[c]: b - a for c, (a, b) in sorted(stored.class_ranges.items())}
    return dg.MaterializeResult(
        metadata={
            "patches": summary.n_patches, "edge_patches": summary.n_edge,
            "patches_per_s": round(summary.patches_per_s), "per_class": counts,
        },
        check_results=[dg.AssetCheckResult(
            check_name="every_labelled_nucleus_has_a_patch",
            passed=bool(stored.n_patches == table.height),
            metadata={"labelled": table.height, "stored": stored.n_patches},
        )],
    )


@dg.asset(
    deps=[dg.AssetDep("nucleus_patches", partition_mapping=dg.AllPartitionMapping())],
    group_name="virtual_he", automation_condition=COHORT_VIEW,
)
def patch_gallery(data_root: DataRoot) -> dg.MaterializeResult:
    """Per class, virtual H&E patches beside their key MxIF stain in green (paper Fig. 1)."""
    t0, layout = time.perf_counter(), data_root.layout
    store = PatchStore(layout.patch_store)
    examples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for slide_id in store.slide_ids():
        _add_examples(examples, store, slide_id, layout, per_class=4)
    png = gallery_png(examples)
    path = atomic_write_bytes(layout.figures_dir("patches") / "gallery.png", png)
    return dg.MaterializeResult(metadata={
        "classes": len(examples), "seconds": round(time.perf_counter() - t0, 2),
        "gallery": _png_md(png), "path": dg.MetadataValue.path(str(path)),
    })


def _add_examples(examples, store, slide_id, layout, per_class: int) -> None:
    """Fill `examples` with up to `per_class` (patch, green key stain) pairs per class."""
    patches = store.slide(slide_id)
    slide = open_slide(layout.slide_zarr(slide_id))
    features = read_slide_partition(layout.features_dir, slide_id).select(
        "nucleus_id", "centroid_y_px", "centroid_x_px")
    grid = ResampleGrid.between(slide.info.mpp, store.mpp)
    half_src = int(np.ceil(store.patch_px / 2 * grid.scale))
    for c, (a, b) in sorted(patches.class_ranges.items()):
        cell_type = CELL_TYPES[c]
        have = examples.setdefault(cell_type, [])
        stain = KEY_STAINS[cell_type]
        if len(have) >= per_class or stain not in slide.info.stains:
            continue
        take = min(b - a, per_class - len(have))
        images = patches.read_rows(a, a + take)
        ids = patches.nucleus_id[a : a + take]
        rows = features.filter(features["nucleus_id"].is_in(ids.tolist()))
        where = dict(zip(rows["nucleus_id"], zip(rows["centroid_y_px"], rows["centroid_x_px"],
                                                  strict=True), strict=True))
        windows = []
        for nid in ids:
            cy, cx = (round(v) for v in where[int(nid)])
            y0, x0 = max(0, cy - half_src), max(0, cx - half_src)
            windows.append(slide.read(y0, x0, cy + half_src + 1, cx + half_src + 1, [stain])[0])
        low, high = np.percentile(np.concatenate([w.ravel() for w in windows]), [5, 99.5])
        have.extend((im, green(w, low, high)) for im, w in zip(images, windows, strict=True))
