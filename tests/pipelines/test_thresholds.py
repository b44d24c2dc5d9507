"""Automatic and manual stain thresholds, the threshold version and the review figure."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest
from PIL import Image

from pipelines.errors import ConfigurationError, StainError
from pipelines.thresholds import (
    AUTO_BLUE,
    HISTOGRAM_GREY,
    MANUAL_RED,
    PANEL_H_PX,
    PANEL_MARGIN_PX,
    PANEL_W_PX,
    TITLE_H_PX,
    AutoThresholdParams,
    auto_threshold,
    feature_stains,
    manual_versions,
    review_figure_png,
    slide_thresholds,
)
from storage.thresholds_csv import parse_thresholds_csv


def _bimodal(
    n: int, positive_share: float, gain: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < positive_share
    values = np.where(
        positive,
        rng.lognormal(np.log(2500.0 * gain), 0.35, n),
        rng.lognormal(np.log(120.0 * gain), 0.5, n),
    )
    return values, positive


@pytest.mark.parametrize("method", ["gmm2_log1p", "otsu_log1p"])
@pytest.mark.parametrize(("share", "gain"), [(0.5, 1.0), (0.2, 3.0), (0.05, 0.4)])
def test_auto_threshold_separates_two_populations(method: str, share: float, gain: float) -> None:
    values, positive = _bimodal(4000, share, gain, seed=1)
    found = auto_threshold(values, AutoThresholdParams(method=method))
    assert 120.0 * gain < found.threshold < 2500.0 * gain
    agreement = float(((values > found.threshold) == positive).mean())
    assert agreement > 0.99
    assert found.method.startswith(method)


def test_auto_threshold_is_deterministic_and_follows_the_slide_gain() -> None:
    values, _ = _bimodal(3000, 0.1, 1.0, seed=7)
    params = AutoThresholdParams()
    first = auto_threshold(values, params)
    assert auto_threshold(values.copy(), params) == first
    brighter = auto_threshold(values * 4.0, params)
    assert 3.0 < brighter.threshold / first.threshold < 5.0


def test_too_few_nuclei_gives_no_positive() -> None:
    found = auto_threshold(np.array([1.0, 5.0, 300.0]), AutoThresholdParams())
    assert found.threshold == 300.0
    assert "too few" in found.note
    flat = auto_threshold(np.full(50, 7.0), AutoThresholdParams())
    assert flat.threshold == 7.0
    assert "same intensity" in flat.note


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="Unknown automatic threshold method"):
        AutoThresholdParams(method="kmeans")  # type: ignore[arg-type]


def _features(slide_id: str = "S1", n: int = 600) -> pl.DataFrame:
    cd3d, _ = _bimodal(n, 0.2, 1.0, seed=2)
    panck, _ = _bimodal(n, 0.4, 2.0, seed=3)
    return pl.DataFrame({
        "nucleus_id": np.arange(n, dtype=np.int64),
        "slide_id": [slide_id] * n,
        "area_px": np.full(n, 40, dtype=np.int64),
        "mean_cd3d": cd3d.astype(np.float32),
        "mean_panck": panck.astype(np.float32),
        "mean_nakatpase": panck.astype(np.float32) * 0.5,
    })


CSV = """slide_id,stain,threshold,set_by,note
S1,CD3D,900,ana,"checked, twice"
S2,PanCK,1000,ben,
"""


def test_manual_thresholds_win_and_every_row_says_where_it_came_from() -> None:
    manual = parse_thresholds_csv(CSV)
    rows = slide_thresholds("S1", _features(), manual, AutoThresholdParams())
    by_stain = {r["stain"]: r for r in rows.iter_rows(named=True)}
    assert set(by_stain) == {"CD3d", "PanCK", "NaKATPase"}
    assert by_stain["CD3d"]["threshold"] == 900.0
    assert by_stain["CD3d"]["source"] == "manual"
    assert by_stain["CD3d"]["set_by"] == "ana"
    assert by_stain["CD3d"]["note"] == "checked, twice"
    assert by_stain["PanCK"]["source"] == "auto"
    assert by_stain["PanCK"]["method"] == "otsu_log1p(bins=256,iterations=200,min_d=2.0)"
    assert rows["threshold_version"].n_unique() == 1
    assert rows["slide_id"].to_list() == ["S1"] * 3
    assert rows.columns == [
        "slide_id", "stain", "stain_key", "threshold", "source", "method", "set_by", "note",
        "threshold_version",
    ]


def test_threshold_version_changes_with_values_not_with_notes() -> None:
    features = _features()
    params = AutoThresholdParams()
    base = slide_thresholds("S1", features, parse_thresholds_csv(CSV), params)
    renoted = CSV.replace('"checked, twice"', "rechecked")
    moved = CSV.replace("S1,CD3D,900", "S1,CD3D,950")
    again = slide_thresholds("S1", features, parse_thresholds_csv(renoted), params)
    changed = slide_thresholds("S1", features, parse_thresholds_csv(moved), params)
    assert again["threshold_version"][0] == base["threshold_version"][0]
    assert changed["threshold_version"][0] != base["threshold_version"][0]
    all_auto = slide_thresholds("S1", features, parse_thresholds_csv(""), params)
    assert all_auto["threshold_version"][0] != base["threshold_version"][0]


def test_manual_versions_change_only_for_the_touched_slide() -> None:
    slides = ["S1", "S2", "S3"]
    before = manual_versions(parse_thresholds_csv(CSV), slides)
    after = manual_versions(parse_thresholds_csv(CSV.replace("S2,PanCK,1000", "S2,PanCK,1200")),
                            slides)
    assert before["S3"] == after["S3"] == "auto"
    assert before["S1"] == after["S1"]
    assert before["S2"] != after["S2"]
    # the same stain in another spelling is the same row
    respelt = manual_versions(parse_thresholds_csv(CSV.replace("CD3D", "cd3d")), slides)
    assert respelt == before


def test_csv_stain_the_slide_lacks_is_an_error() -> None:
    manual = parse_thresholds_csv("slide_id,stain,threshold\nS1,CD20,5\n")
    with pytest.raises(StainError, match="CD20"):
        slide_thresholds("S1", _features(), manual, AutoThresholdParams())


@pytest.mark.parametrize("hostile", ['cd3d" > 0; DROP TABLE x; --', "x'; SELECT 1; --", "1abc"])
def test_hostile_stain_names_are_refused(hostile: str) -> None:
    text = 'slide_id,stain,threshold\nS1,"' + hostile.replace('"', '""') + '",5\n'
    with pytest.raises(StainError):
        slide_thresholds("S1", _features(), parse_thresholds_csv(text), AutoThresholdParams())
    features = _features().rename({"mean_cd3d": "mean_" + hostile})
    with pytest.raises(StainError):
        feature_stains(features)


def test_review_figure_draws_each_cut_off_where_it_lies_in_its_colour() -> None:
    features = _features()
    rows = slide_thresholds("S1", features, parse_thresholds_csv(CSV), AutoThresholdParams())
    png = review_figure_png("S1", features, rows)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape == (TITLE_H_PX + PANEL_H_PX, 3 * PANEL_W_PX, 3)  # 3 stains, one row
    panels = rows.sort("stain_key").to_dicts()  # cd3d (manual), nakatpase, panck (auto)
    assert [r["source"] for r in panels] == ["manual", "auto", "auto"]
    middle = TITLE_H_PX + PANEL_H_PX // 2
    for i, row in enumerate(panels):
        logs = np.log1p(features["mean_" + row["stain_key"]].to_numpy().astype(np.float64))
        cut = np.log1p(row["threshold"])
        lo, hi = min(logs.min(), cut), max(logs.max(), cut)
        left = i * PANEL_W_PX + PANEL_MARGIN_PX
        expected = left + (cut - lo) / (hi - lo) * (PANEL_W_PX - 2 * PANEL_MARGIN_PX)
        colour = MANUAL_RED if row["source"] == "manual" else AUTO_BLUE
        xs = np.flatnonzero((image[middle, i * PANEL_W_PX:(i + 1) * PANEL_W_PX]
                             == colour).all(axis=1)) + i * PANEL_W_PX
        assert xs.size and abs(xs.mean() - expected) <= 1.5, (row["stain"], xs, expected)
    # the histogram: its bars reach the panel's axis
    assert (image[TITLE_H_PX + PANEL_H_PX - 17, :PANEL_W_PX] == HISTOGRAM_GREY).all(axis=1).any()


def test_one_population_gives_few_positives() -> None:
    rng = np.random.default_rng(5)
    values = rng.lognormal(np.log(150.0), 0.4, 5000)
    found = auto_threshold(values, AutoThresholdParams())
    assert float((values > found.threshold).mean()) < 0.01
    assert "no separate positive population" in found.note
