"""nucleus_features' glue streams a slide's rows strip by strip into its partition: the same
rows as the in-memory pass, nuclei in pieces rewritten in place, checks from the stream."""

import polars as pl
import pyarrow.parquet as pq

from dagster_project.defs.nuclei.wiring import write_features
from pipelines.quantify import QuantifyParams, feature_checks, quantify_slide
from pipelines.segment.base import ArrayMask, ArraySlide
from storage.parquet_dataset import partition_path, read_slide_partition
from tests.pipelines.test_quantify import STAINS, tall_field


def test_streamed_partition_holds_the_slides_features_one_row_group_a_strip(tmp_path) -> None:
    image, labels = tall_field()
    slide, mask = ArraySlide(image, STAINS, 0.5, "s1"), ArrayMask(labels, "s1")
    params = QuantifyParams(tile_px=40)
    written = write_features(tmp_path, slide, mask, params)
    assert written.path == partition_path(tmp_path, "s1")
    back = read_slide_partition(tmp_path, "s1")
    whole = quantify_slide(slide, mask, params)
    # Same rows and values; in finishing order, which readers join on nucleus_id, not rely on.
    assert back.sort("label").equals(whole)
    assert back["label"].to_list() != whole["label"].to_list()
    # 1009 and 5000 lie in pieces across strips: rewritten whole in their first strip's group.
    for label in (1009, 5000):
        assert back.filter(pl.col("label") == label).equals(
            whole.filter(pl.col("label") == label))
    groups = pq.ParquetFile(written.path).num_row_groups
    assert 10 < groups <= 18  # one per strip of 40 rows that finished nuclei (690 rows)
    assert written.summary.checks() == feature_checks(whole)
    assert written.head.equals(back.head(5))
    assert [p.name for p in written.path.parent.iterdir()] == ["part-0.parquet"]
