"""Exports for the ecosystem's tools: AnnData tables (scanpy, squidpy, SCIMAP) and OME-NGFF
images (napari, QuPath).

`nucleus_anndata` writes exports/anndata/slides/<slide_id>.h5ad from the slide's Parquet
partitions (storage/anndata_file.py says what goes where); `cohort_anndata` stacks every
slide's file into exports/anndata/cohort.h5ad. Predictions join in once the slide was inferred:
re-materialise the slide after nucleus_inference to add them. `slide_ome_zarr` (on request
only: it copies the slide's pixels) writes exports/ome_zarr/<slide_id>/ (storage/ome_zarr.py).
"""

import time

import dagster as dg

from dagster_project.automation import COHORT_VIEW, SLIDE_STAGE
from dagster_project.defs.exports import wiring
from dagster_project.defs.metadata import command_md, table_md
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.defs.slides.sensors import ON_REQUEST
from dagster_project.partitions import slide_partitions
from dagster_project.resources import DataRoot
from storage.anndata_file import NucleusTable, read_nucleus_table
from storage.ome_zarr import DEFAULT_TILE_PX


class OmeZarrConfig(dg.Config):
    """tile_px: edge of the windows written at a time and of the chunks (the slide store's
    1024 px chunks are then each read once)."""

    tile_px: int = DEFAULT_TILE_PX


EXAMPLE = "import anndata as ad; adata = ad.read_h5ad({path!r})"


def _metadata(table: NucleusTable, path, start: float) -> dict:
    counts = table.obs.group_by("cell_type").len("n_nuclei").sort("n_nuclei", descending=True)
    return {
        "n_nuclei": table.n_nuclei, "n_stains": len(table.stains),
        "n_predicted": table.n_nuclei - table.obs["predicted_cell_type"].null_count(),
        "path": dg.MetadataValue.path(str(path)), "seconds": round(time.perf_counter() - start, 2),
        "counts": table_md(counts),
        "example": command_md(EXAMPLE.format(path=str(path))),
    }


@dg.asset(
    partitions_def=slide_partitions, group_name="exports", kinds={"anndata"},
    deps=["nucleus_features", "stain_thresholds", "nucleus_labels"],
    automation_condition=SLIDE_STAGE,
    check_specs=[dg.AssetCheckSpec("reads_back_as_written", asset="nucleus_anndata")],
)
def nucleus_anndata(context: dg.AssetExecutionContext, data_root: DataRoot,
                    slide_inputs: SlideInputs) -> dg.MaterializeResult:
    """One slide's nuclei as AnnData: X mean intensities, obs labels, obsm spatial in µm."""
    slide_id, layout, start = context.partition_key, data_root.layout, time.perf_counter()
    table, path = wiring.write_slide_table(layout, slide_id, slide_inputs)
    back = read_nucleus_table(path)
    same = back.obs.equals(table.obs) and back.stains == table.stains
    return dg.MaterializeResult(
        metadata=_metadata(table, path, start),
        check_results=[dg.AssetCheckResult(check_name="reads_back_as_written", passed=same,
                                           metadata={"n_obs_read": back.n_nuclei})],
    )


@dg.asset(group_name="exports", kinds={"anndata"}, deps=[nucleus_anndata],
          automation_condition=COHORT_VIEW)
def cohort_anndata(context: dg.AssetExecutionContext, data_root: DataRoot
                   ) -> dg.MaterializeResult:
    """Every current slide's nuclei in one AnnData file (stains: the union, NaN where absent)."""
    layout, start = data_root.layout, time.perf_counter()
    slides = context.instance.get_dynamic_partitions(slide_partitions.name)
    present = [s for s in slides if layout.anndata_slide(s).exists()]
    table, path = wiring.write_cohort_table(layout, present)
    per_slide = table.obs.group_by("slide_id").len("n_nuclei").sort("slide_id")
    return dg.MaterializeResult(metadata={
        **_metadata(table, path, start), "n_slides": len(present),
        "slides_without_file": len(slides) - len(present),
        "per_slide": table_md(per_slide),
    })


@dg.asset(partitions_def=slide_partitions, group_name="exports", kinds={"zarr"},
          deps=["slide_image", "nucleus_mask", "virtual_he"], tags=ON_REQUEST)
def slide_ome_zarr(context: dg.AssetExecutionContext, config: OmeZarrConfig,
                   data_root: DataRoot) -> dg.MaterializeResult:
    """The slide and its virtual H&E as OME-NGFF 0.4 pyramids, nucleus labels in each."""
    slide_id, layout, start = context.partition_key, data_root.layout, time.perf_counter()
    out = wiring.write_slide_ome_zarr(layout, slide_id, config.tile_px)
    return dg.MaterializeResult(metadata={
        "mxif": dg.MetadataValue.path(str(out.mxif.path)),
        "virtual_he": dg.MetadataValue.path(str(out.virtual_he.path)),
        "stains": ", ".join(out.stains), "levels": len(out.mxif.level_shapes),
        "level_shapes": str(list(out.mxif.level_shapes)),
        "chunks_written": out.mxif.n_chunks + out.virtual_he.n_chunks,
        "seconds": round(time.perf_counter() - start, 2),
        "example": command_md(f"napari --plugin napari-ome-zarr {out.mxif.path}"),
    })
