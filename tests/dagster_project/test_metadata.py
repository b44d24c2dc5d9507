"""The metadata every stage's assets show: inline PNGs, linked figures, tables, commands."""

import base64
from pathlib import Path

import numpy as np
import polars as pl

from dagster_project.defs.metadata import command_md, linked_png_md, png_md, table_md
from storage.png import rgb_png


def test_png_md_inlines_the_bytes_and_a_caption():
    png = rgb_png(np.zeros((2, 3, 3), np.uint8))
    text = png_md(png).value
    assert text.startswith("![preview](data:image/png;base64,") and text.endswith(")")
    assert base64.b64decode(text.split(",", 1)[1][:-1]) == png
    captioned = png_md(png, alt="map", caption="S1 (DAPI blue)").value
    assert captioned.startswith("S1 (DAPI blue)\n\n![map](data:image/png;base64,")


def test_linked_png_md_table_md_and_command_md(tmp_path: Path):
    figure = tmp_path / "a b.png"
    assert linked_png_md(figure, caption="x | y").value == \
        f"x | y\n\n![preview]({figure.absolute().as_uri()})"
    assert "%20" in linked_png_md(figure).value
    frame = pl.DataFrame({"cell_type": [f"c{i}" for i in range(40)], "n": list(range(40))})
    assert table_md(frame).value.count("\n") == 2 + 30 - 1  # header, rule, first 30 rows
    assert table_md(frame, None).value.count("\n") == 2 + 40 - 1
    assert table_md(frame.head(1)).value == "| cell_type | n |\n|---|---|\n| c0 | 0 |"
    assert command_md("duckdb x.duckdb").value == "`duckdb x.duckdb`"
