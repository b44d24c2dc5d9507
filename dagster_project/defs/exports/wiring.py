"""Glue of the export assets: read one slide's outputs through storage/, assemble them with
pipelines/, write through storage/. No science here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dagster_project.defs.slides.resources import SlideInputs
from pipelines.nucleus_table import concat_tables, nucleus_table
from pipelines.stains import NUCLEAR_STAIN
from storage.anndata_file import NucleusTable, read_nucleus_table, write_nucleus_h5ad
from storage.errors import StoreLayoutError
from storage.layout import DataLayout
from storage.manifest import manifest_row
from storage.mask_store import open_mask
from storage.ome_zarr import NgffImage, NgffWritten, write_ome_zarr
from storage.parquet_dataset import partition_path, read_slide_partition
from storage.slide_store import open_slide
from storage.vhe_store import open_vhe

MXIF_NAME, VHE_NAME = "mxif.ome.zarr", "virtual_he.ome.zarr"


def slide_row(layout: DataLayout, slide_id: str, inputs: SlideInputs) -> dict | None:
    """The slide's manifest row; for a slide the inbox sensor found since the manifest was
    last written, its row from the slide inputs (as slide_image does)."""
    row = manifest_row(layout.manifest_parquet, slide_id)
    if row is not None:
        return row
    frame, _ = inputs.collect_skipping(layout, settle_seconds=0.0)
    rows = frame.filter(frame["slide_id"] == slide_id).to_dicts()
    return rows[0] if rows else None


def slide_table(layout: DataLayout, slide_id: str, inputs: SlideInputs) -> NucleusTable:
    """The slide's table from its Parquet partitions; predictions join in where the slide was
    inferred (nucleus_inference), and stay empty otherwise."""
    inferred = partition_path(layout.inference_dir, slide_id).exists()
    return nucleus_table(
        slide_id,
        read_slide_partition(layout.features_dir, slide_id),
        read_slide_partition(layout.labels_dir, slide_id),
        read_slide_partition(layout.thresholds_dir, slide_id),
        slide_row(layout, slide_id, inputs),
        read_slide_partition(layout.inference_dir, slide_id) if inferred else None,
    )


def write_slide_table(layout: DataLayout, slide_id: str, inputs: SlideInputs
                      ) -> tuple[NucleusTable, Path]:
    table = slide_table(layout, slide_id, inputs)
    return table, write_nucleus_h5ad(layout.anndata_slide(slide_id), table)


def write_cohort_table(layout: DataLayout, slide_ids: list[str]) -> tuple[NucleusTable, Path]:
    """The cohort file from the slides' own files, in slide_id order."""
    tables = [read_nucleus_table(layout.anndata_slide(s)) for s in sorted(slide_ids)]
    table = concat_tables(tables)
    return table, write_nucleus_h5ad(layout.anndata_cohort, table)


# Display colours of an MxIF export: the nuclear stain blue, the others in turn from this list.
STAIN_COLOURS = ("FF0000", "00FF00", "FFFF00", "FF00FF", "00FFFF", "FF8000", "FFFFFF",
                 "8000FF", "80FF00", "FF0080", "0080FF")
RGB_COLOURS = ("FF0000", "00FF00", "0000FF")


def stain_colours(stains: tuple[str, ...]) -> tuple[str, ...]:
    others = iter(STAIN_COLOURS * (len(stains) // len(STAIN_COLOURS) + 1))
    return tuple("0000FF" if s == NUCLEAR_STAIN else next(others) for s in stains)


@dataclass(frozen=True)
class SlideExport:
    mxif: NgffWritten
    virtual_he: NgffWritten
    stains: tuple[str, ...]


def write_slide_ome_zarr(layout: DataLayout, slide_id: str, tile_px: int) -> SlideExport:
    """The slide's MxIF image and its virtual H&E as OME-NGFF, each with the nucleus labels."""
    slide = open_slide(layout.slide_zarr(slide_id))
    mask = open_mask(layout.mask_zarr(slide_id))
    vhe = open_vhe(layout.vhe_zarr(slide_id))
    info = slide.info
    grids = {"slide": (info.height_px, info.width_px), "mask": (mask.height_px, mask.width_px),
             "virtual H&E": (vhe.height_px, vhe.width_px)}
    if len(set(grids.values())) > 1:
        raise StoreLayoutError(f"Slide {slide_id!r}: the image, nucleus mask and virtual H&E "
                               f"grids differ ({grids}); re-materialise nucleus_mask and "
                               "virtual_he for this slide.")
    folder = layout.ome_zarr_dir(slide_id)
    mxif = NgffImage(slide_id, info.stains, stain_colours(info.stains), info.mpp,
                     info.height_px, info.width_px, info.dtype,
                     lambda y0, x0, y1, x1: slide.read(y0, x0, y1, x1))
    rgb = NgffImage(f"{slide_id} virtual H&E", ("red", "green", "blue"), RGB_COLOURS, vhe.mpp,
                    vhe.height_px, vhe.width_px, "uint8",
                    lambda y0, x0, y1, x1: vhe.read(y0, x0, y1, x1).transpose(2, 0, 1))
    return SlideExport(
        write_ome_zarr(folder / MXIF_NAME, mxif, mask.read, tile_px),
        write_ome_zarr(folder / VHE_NAME, rgb, mask.read, tile_px),
        info.stains,
    )
