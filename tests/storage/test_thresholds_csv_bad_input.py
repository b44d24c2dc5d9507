"""Manual thresholds that used to be dropped or taken silently (issue 16, item 5)."""

from __future__ import annotations

import pytest

from storage.thresholds_csv import ThresholdsCsvError, parse_thresholds_csv, read_thresholds_csv

HEADER = "slide_id,stain,threshold\n"


def test_a_row_for_an_unknown_slide_names_the_line_and_the_known_slides() -> None:
    text = HEADER + "P01_S1,CD4,300\nP99_S9,CD3d,800\n"
    with pytest.raises(ThresholdsCsvError) as info:
        parse_thresholds_csv(text, source="thresholds.csv", known_slides={"P01_S1", "P01_S2"})
    message = str(info.value)
    assert "thresholds.csv, line 3 ('P99_S9,CD3d,800')" in message
    assert "slide 'P99_S9' is not in the cohort" in message
    assert "known slides: P01_S1, P01_S2" in message
    # without the cohort's slides (parsing alone) the row is read as written
    assert parse_thresholds_csv(text)["slide_id"].to_list() == ["P01_S1", "P99_S9"]


def test_read_thresholds_csv_checks_the_slides_it_is_given(tmp_path) -> None:
    path = tmp_path / "thresholds.csv"
    path.write_text(HEADER + "P01_S1,CD4,300\n")
    assert read_thresholds_csv(path, {"P01_S1"})["threshold"].to_list() == [300.0]
    with pytest.raises(ThresholdsCsvError, match=r"line 2 \('P01_S1,CD4,300'\).*known slides: "
                                                  r"none yet"):
        read_thresholds_csv(path, set())


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ThresholdsCsvError) as info:
        parse_thresholds_csv(HEADER + "S1,CD4,-5\n", source="t.csv")
    message = str(info.value)
    assert "t.csv, line 2 ('S1,CD4,-5')" in message
    assert "threshold -5 for slide 'S1', stain 'CD4' is negative" in message
    assert parse_thresholds_csv(HEADER + "S1,CD4,0\n")["threshold"].to_list() == [0.0]
