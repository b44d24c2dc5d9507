"""The simulator's ground truth: mask, Table-1 classes and marker profiles agree."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.stains import COLON_PANEL, stain_key
from pipelines.synthetic import CohortParams, plan_cohort, simulate_slide, table1_cell_type

PARAMS = CohortParams(n_patients=2, n_slides=2, slide_px=512, seed=3)


@pytest.fixture(scope="module")
def slides():
    specs = plan_cohort(PARAMS)
    return [simulate_slide(spec, PARAMS) for spec in specs]


def test_every_truth_nucleus_is_in_the_mask_with_its_label(slides) -> None:
    for slide in slides:
        labels = slide.labels
        n = slide.nuclei.height
        assert set(np.unique(labels)) == set(range(n + 1))
        area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        assert area.tolist() == slide.nuclei["area_px"].to_list()
        ys = np.rint(slide.nuclei["centroid_y_px"].to_numpy()).astype(int)
        xs = np.rint(slide.nuclei["centroid_x_px"].to_numpy()).astype(int)
        # The centroid of a convex-ish nucleus lies inside it for nearly every nucleus.
        inside = labels[ys, xs] == slide.nuclei["true_label"].to_numpy()
        assert inside.mean() > 0.97


def test_recorded_cell_type_is_table1_of_recorded_positivity(slides) -> None:
    for slide in slides:
        pos_cols = [f"pos_{stain_key(s)}" for s in COLON_PANEL]
        for row in slide.nuclei.select("cell_type", *pos_cols).iter_rows():
            pos = dict(zip(COLON_PANEL, row[1:], strict=True))
            assert table1_cell_type(pos) == row[0]
        n = slide.nuclei.height
        assert 200 < n < 1500
        unlabelled = slide.nuclei["cell_type"].null_count()
        assert 0 < unlabelled < 0.15 * n


def _nucleus_means(slide, stain: str) -> np.ndarray:
    plane = slide.image[slide.stains.index(stain)].astype(np.float64)
    n = slide.nuclei.height
    sums = np.bincount(slide.labels.ravel(), weights=plane.ravel(), minlength=n + 1)[1:]
    return sums / slide.nuclei["area_px"].to_numpy()


@pytest.mark.parametrize("stain", ["CD4", "CD8", "CD20", "CD68", "PanCK", "Muc2", "Sox9", "SMA"])
def test_positive_nuclei_are_much_brighter(slides, stain: str) -> None:
    for slide in slides:
        means = _nucleus_means(slide, stain)
        pos = slide.nuclei[f"pos_{stain_key(stain)}"].to_numpy()
        if pos.sum() < 5:
            continue
        assert np.median(means[pos]) > 2.0 * np.median(means[~pos])


def test_helper_t_carry_cd4(slides) -> None:
    slide = slides[0]
    means = _nucleus_means(slide, "CD4")
    helper = (slide.nuclei["cell_type"] == "helper_t").fill_null(False).to_numpy()
    assert helper.sum() > 10
    assert np.median(means[helper]) > 2.0 * np.median(means[~helper])
