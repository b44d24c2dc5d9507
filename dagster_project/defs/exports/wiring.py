"""Glue of the export assets: read one slide's outputs through storage/, assemble them with
pipelines/, write through storage/. No science here."""

from __future__ import annotations

from pathlib import Path

from pipelines.nucleus_table import concat_tables, nucleus_table
from storage.anndata_file import NucleusTable, read_nucleus_table, write_nucleus_h5ad
from storage.layout import DataLayout
from storage.manifest import manifest_row
from storage.parquet_dataset import partition_path, read_slide_partition


def slide_table(layout: DataLayout, slide_id: str) -> NucleusTable:
    """The slide's table from its Parquet partitions; predictions join in where the slide was
    inferred (nucleus_inference), and stay empty otherwise."""
    inferred = partition_path(layout.inference_dir, slide_id).exists()
    return nucleus_table(
        slide_id,
        read_slide_partition(layout.features_dir, slide_id),
        read_slide_partition(layout.labels_dir, slide_id),
        read_slide_partition(layout.thresholds_dir, slide_id),
        manifest_row(layout.manifest_parquet, slide_id),
        read_slide_partition(layout.inference_dir, slide_id) if inferred else None,
    )


def write_slide_table(layout: DataLayout, slide_id: str) -> tuple[NucleusTable, Path]:
    table = slide_table(layout, slide_id)
    return table, write_nucleus_h5ad(layout.anndata_slide(slide_id), table)


def write_cohort_table(layout: DataLayout, slide_ids: list[str]) -> tuple[NucleusTable, Path]:
    """The cohort file from the slides' own files, in slide_id order."""
    tables = [read_nucleus_table(layout.anndata_slide(s)) for s in sorted(slide_ids)]
    table = concat_tables(tables)
    return table, write_nucleus_h5ad(layout.anndata_cohort, table)
