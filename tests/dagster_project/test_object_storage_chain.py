"""The slide chain with the data root on object storage (fsspec `memory://`, one process):
synthetic cohort -> manifest -> slide images -> masks -> features -> thresholds -> labels ->
catalog, every byte under the URL and none on the local disk."""

from __future__ import annotations

import os
import uuid

import dagster as dg
import numpy as np
import polars as pl
from upath import UPath

from dagster_project.defs.cohort.assets import synthetic_cohort
from dagster_project.defs.labels.assets import (
    manual_thresholds,
    nucleus_catalog,
    nucleus_labels,
    stain_thresholds,
)
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.defs.nuclei.assets import nucleus_features, nucleus_mask
from dagster_project.defs.slides.assets import slide_image, slide_manifest
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.resources import DataRoot
from storage.catalog import query_catalog
from storage.layout import DataLayout
from storage.mask_store import open_mask
from storage.parquet_dataset import read_slide_partition, slide_ids
from storage.slide_store import open_slide

COHORT = {"n_patients": 2, "n_slides": 2, "slide_px": 256, "workers": 1}


def test_slide_chain_on_memory_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written to a relative local path would land here
    root = UPath(f"memory://chain-{uuid.uuid4().hex[:8]}/data")
    layout = DataLayout(str(root))
    resources = {
        "data_root": DataRoot(root=str(root)),
        "slide_inputs": SlideInputs(settle_seconds=0.0),
        "mesmer_pipes": dg.PipesSubprocessClient(),
        "label_settings": LabelSettings(review_figures=False),
    }
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = dg.materialize(
            [synthetic_cohort, slide_manifest], resources=resources, instance=instance,
            run_config={"ops": {"synthetic_cohort": {"config": COHORT}}})
        assert result.success
        ids = sorted(instance.get_dynamic_partitions("slides"))
        assert len(ids) == 2
        for slide_id in ids:
            result = dg.materialize(
                [slide_image, nucleus_mask, nucleus_features, manual_thresholds,
                 stain_thresholds, nucleus_labels],
                partition_key=slide_id, resources=resources, instance=instance,
                selection=["slide_image", "nucleus_mask", "nucleus_features",
                           "stain_thresholds", "nucleus_labels"])
            assert result.success
        result = dg.materialize([nucleus_catalog], resources=resources, instance=instance)
        assert result.success

        for slide_id in ids:
            slide, mask = open_slide(layout.slide_zarr(slide_id)), open_mask(
                layout.mask_zarr(slide_id))
            assert (slide.info.height_px, slide.info.width_px) == (256, 256)
            labels = mask.read()
            features = read_slide_partition(layout.features_dir, slide_id)
            assert features.height == len(np.unique(labels[labels > 0])) > 0
            assert read_slide_partition(layout.labels_dir, slide_id).height == features.height
        assert slide_ids(layout.features_dir) == ids == slide_ids(layout.labels_dir)
        counts = query_catalog(layout.catalog_db,
                               "SELECT slide_id, count(*) AS n FROM nucleus_labels "
                               "GROUP BY slide_id ORDER BY slide_id")
        expected = [(s, read_slide_partition(layout.labels_dir, s).height) for s in ids]
        assert counts.rows() == expected
        written = {p.name for p in root.iterdir()}
        assert {"cohort", "slides", "masks", "nucleus_features", "nucleus_labels",
                "stain_thresholds", "manifest.parquet", "catalog.duckdb"} <= written
        assert pl.read_parquet(layout.manifest_parquet.read_bytes()).height == 2
        assert os.listdir(tmp_path) == []
    finally:
        root.fs.rm(root.path, recursive=True)
