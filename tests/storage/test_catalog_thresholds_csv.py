"""Reading and writing the manual thresholds CSV."""

from __future__ import annotations

import polars as pl
import pytest

from storage.thresholds_csv import (
    ThresholdsCsvError,
    parse_thresholds_csv,
    read_thresholds_csv,
    write_thresholds_csv,
)


def test_rows_keep_raw_stain_names_and_their_lines() -> None:
    text = (
        "# thresholds checked on the review figures\n"
        "slide_id,stain,threshold,set_by,note\n"
        "\n"
        "S1,CD3D,812.5,ana,\"membrane, faint\"\n"
        "S2, PanKRT ,1e3,,\n"
    )
    rows = parse_thresholds_csv(text)
    assert rows.to_dicts() == [
        {"slide_id": "S1", "stain": "CD3D", "threshold": 812.5, "set_by": "ana",
         "note": "membrane, faint", "line": 4},
        {"slide_id": "S2", "stain": "PanKRT", "threshold": 1000.0, "set_by": "", "note": "",
         "line": 5},
    ]


def test_set_by_and_note_may_be_left_out() -> None:
    rows = parse_thresholds_csv("slide_id,stain,threshold\nS1,CD4,3\n")
    assert rows.select("set_by", "note").row(0) == ("", "")


def test_an_absent_file_means_all_automatic(tmp_path) -> None:
    rows = read_thresholds_csv(tmp_path / "thresholds.csv")
    assert rows.height == 0
    assert rows.columns == ["slide_id", "stain", "threshold", "set_by", "note", "line"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("slide,stain,threshold\nS1,CD4,3\n", "header must name"),
        ("slide_id,stain,threshold,colour\nS1,CD4,3,red\n", "unknown \\['colour'\\]"),
        ("slide_id,stain,threshold\nS1,CD4,three\n", "line 2: threshold 'three'"),
        ("slide_id,stain,threshold\nS1,CD4,nan\n", "not a finite number"),
        ("slide_id,stain,threshold\n../x,CD4,3\n", "line 2: Slide id '../x'"),
        ("slide_id,stain,threshold\nS1,,3\n", "stain is empty"),
        ("slide_id,stain,threshold\nS1,CD4,3,extra\n", "expected 3 fields"),
        ("slide_id,stain,threshold\nS1,CD4,3\nS1,cd4,4\n", "lines 2 and 3"),
    ],
)
def test_bad_rows_name_the_line_and_what_to_do(text: str, message: str) -> None:
    with pytest.raises(ThresholdsCsvError, match=message):
        parse_thresholds_csv(text, source="t.csv")


def test_write_then_read_round_trips(tmp_path) -> None:
    rows = pl.DataFrame({
        "slide_id": ["S1", "S1"], "stain": ["CD3d", "PanCK"], "threshold": [0.1, 1234.5678],
        "set_by": ["auto", ""], "note": ["a, b", ""],
    })
    path = write_thresholds_csv(tmp_path / "suggested.csv", rows)
    back = read_thresholds_csv(path).drop("line")
    assert back.to_dicts() == rows.to_dicts()
