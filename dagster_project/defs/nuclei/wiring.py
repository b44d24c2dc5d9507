"""nucleus_features' glue: stream a slide's feature rows strip by strip into its Parquet
partition (one row group a strip), adding up what the checks and the preview need on the way,
so no stage holds a row per nucleus of the whole slide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.quantify import (
    FeatureSummary,
    MaskTiles,
    QuantifyParams,
    SlideFeatures,
    SlideTiles,
    empty_features,
    feature_schema,
)
from storage.fs import StoragePath
from storage.parquet_dataset import create_slide_partition, partition_path

HEAD_ROWS = 5


@dataclass
class WrittenFeatures:
    """Where the partition went, the checks' running summary and its first rows (preview)."""

    path: StoragePath
    summary: FeatureSummary
    head: pl.DataFrame


def write_features(dataset_dir: Path, slide: SlideTiles, mask: MaskTiles,
                   params: QuantifyParams) -> WrittenFeatures:
    """Measure the slide's nuclei and write them as its partition of `dataset_dir`: rows in
    the order nuclei finish (strip by strip of tiles, by label within a strip); a label in
    pieces met again after its row was written gets its row rewritten in place at the end."""
    info = slide.info
    features, summary = SlideFeatures(slide, mask, params), FeatureSummary()
    head = empty_features(info.stains)
    with create_slide_partition(dataset_dir, info.slide_id, feature_schema(info.stains)) as part:
        for frame in features:
            part.write(frame)
            summary.add(frame)
            if head.height < HEAD_ROWS:
                head = pl.concat([head, frame.head(HEAD_ROWS - head.height)])
        if features.revisit:
            given = part.rows("label", sorted(features.revisit))
            revised = features.revise(given)
            part.replace(revised, "label")
            summary.add(given, sign=-1)
            summary.add(revised)
            head = head.update(revised, on="label", include_nulls=True)
    return WrittenFeatures(partition_path(dataset_dir, info.slide_id), summary, head)
