"""A slide partition streamed in as row groups: read back as written, rows replaced in place,
and a failed run leaves the old partition and no temporaries."""

import polars as pl
import pyarrow.parquet as pq
import pytest

from storage.parquet_dataset import (
    create_slide_partition,
    partition_path,
    read_slide_partition,
    write_slide_partition,
)

SCHEMA = {"nucleus_id": pl.Int64, "slide_id": pl.Utf8, "label": pl.Int32, "area_px": pl.Int64,
          "mean_dapi": pl.Float32}


def _rows(labels: list[int], slide_id: str = "S1") -> pl.DataFrame:
    return pl.DataFrame({"nucleus_id": [100 + k for k in labels], "slide_id": slide_id,
                         "label": labels, "area_px": [10 * k for k in labels],
                         "mean_dapi": [k / 2 for k in labels]}, schema=SCHEMA)


def test_each_write_is_one_row_group_read_back_in_order(tmp_path) -> None:
    with create_slide_partition(tmp_path, "S1", SCHEMA) as part:
        part.write(_rows([3, 1]))
        part.write(_rows([]))  # a strip without finished nuclei adds nothing
        part.write(_rows([2, 5, 4]))
        assert not partition_path(tmp_path, "S1").exists()  # only renamed at the end
    path = partition_path(tmp_path, "S1")
    assert pq.ParquetFile(path).num_row_groups == 2
    back = read_slide_partition(tmp_path, "S1")
    assert back.equals(_rows([3, 1, 2, 5, 4])) and dict(back.schema) == SCHEMA
    assert part.n_rows == 5
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_rows_are_read_back_and_replaced_in_place(tmp_path) -> None:
    with create_slide_partition(tmp_path, "S1", SCHEMA) as part:
        part.write(_rows([3, 1]))
        part.write(_rows([2, 5, 4]))
        given = part.rows("label", [5, 1])
        assert sorted(given["label"]) == [1, 5]
        fixed = given.with_columns(pl.col("area_px") + 7, pl.col("mean_dapi") * 0 + 0.25)
        part.replace(fixed, "label")
        with pytest.raises(ValueError, match="closed to new rows"):
            part.write(_rows([9]))
    back = read_slide_partition(tmp_path, "S1")
    assert back["label"].to_list() == [3, 1, 2, 5, 4]
    assert back["area_px"].to_list() == [30, 17, 20, 57, 40]
    assert back["mean_dapi"].to_list() == [1.5, 0.25, 1.0, 0.25, 2.0]
    assert pq.ParquetFile(partition_path(tmp_path, "S1")).num_row_groups == 2
    assert len(list(partition_path(tmp_path, "S1").parent.iterdir())) == 1


def test_no_rows_give_an_empty_file_with_the_schema(tmp_path) -> None:
    with create_slide_partition(tmp_path, "S1", SCHEMA):
        pass
    back = read_slide_partition(tmp_path, "S1")
    assert back.height == 0 and dict(back.schema) == SCHEMA


def test_a_failed_run_leaves_the_old_partition_and_no_temporaries(tmp_path) -> None:
    write_slide_partition(tmp_path, "S1", _rows([1, 2]))
    with (pytest.raises(RuntimeError, match="strip 2"),
          create_slide_partition(tmp_path, "S1", SCHEMA) as part):
        part.write(_rows([7, 8, 9]))
        raise RuntimeError("strip 2 could not be read")
    assert read_slide_partition(tmp_path, "S1").equals(_rows([1, 2]))
    folder = partition_path(tmp_path, "S1").parent
    assert [p.name for p in folder.iterdir()] == ["part-0.parquet"]


def test_rows_of_another_slide_are_refused(tmp_path) -> None:
    with (pytest.raises(ValueError, match="another slide"),
          create_slide_partition(tmp_path, "S1", SCHEMA) as part):
        part.write(_rows([1], slide_id="S2"))
    assert not partition_path(tmp_path, "S1").exists()
