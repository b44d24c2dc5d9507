"""Cohort plan (patients, sites, conditions, slides) and determinism of the simulator."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipelines.errors import ConfigurationError
from pipelines.synthetic import (
    CohortParams,
    SlideSpec,
    plan_cohort,
    simulate_cohort,
    simulate_slide,
)


def test_default_cohort_is_paper_like() -> None:
    specs = plan_cohort(CohortParams())
    frame = pl.DataFrame([s.__dict__ for s in specs])
    assert frame.height == 28
    assert frame["slide_id"].n_unique() == 28
    patients = frame.unique("patient_id")
    assert patients.height == 20
    per_patient = frame.group_by("patient_id").len()["len"]
    assert per_patient.min() >= 1 and per_patient.max() <= 4
    assert frame.group_by("site").len().sort("site")["len"].to_list() == [14, 14]
    for site in ("ascending_colon", "terminal_ileum"):
        mine = patients.filter(pl.col("site") == site)
        assert mine.height == 10
        counts = dict(mine.group_by("condition").len().iter_rows())
        assert counts == {"normal": 4, "inactive_crohns": 3, "active_crohns": 3}
    # A patient's slides share site and condition.
    assert frame.group_by("patient_id").agg(pl.col("site").n_unique())["site"].max() == 1
    assert plan_cohort(CohortParams()) == specs


@pytest.mark.parametrize(("n_patients", "n_slides"), [(3, 2), (2, 9), (0, 0)])
def test_impossible_cohorts_are_refused(n_patients: int, n_slides: int) -> None:
    with pytest.raises(ConfigurationError, match="1-4"):
        plan_cohort(CohortParams(n_patients=n_patients, n_slides=n_slides))


def test_same_seed_same_slide_other_seed_other_slide() -> None:
    params = CohortParams(n_patients=1, n_slides=1, slide_px=256, seed=5)
    spec = plan_cohort(params)[0]
    first, again = simulate_slide(spec, params), simulate_slide(spec, params)
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.labels, again.labels)
    assert first.nuclei.equals(again.nuclei)
    other = simulate_slide(spec, CohortParams(n_patients=1, n_slides=1, slide_px=256, seed=6))
    assert not np.array_equal(first.labels, other.labels)


def test_parallel_simulation_gives_the_same_slides() -> None:
    params = CohortParams(n_patients=2, n_slides=3, slide_px=192, seed=1)
    serial = list(simulate_cohort(params))
    parallel = list(simulate_cohort(params, workers=2))
    assert [s.slide_id for s in serial] == [s.slide_id for s in parallel]
    for a, b in zip(serial, parallel, strict=True):
        assert np.array_equal(a.image, b.image)


def test_active_crohns_has_more_immune_cells() -> None:
    params = CohortParams(n_patients=1, n_slides=1, slide_px=512, seed=2)
    immune = {"helper_t", "cytotoxic_t", "t_cell_receptor", "b_cell", "macrophage",
              "monocyte", "myeloid", "leukocyte"}
    share = {}
    for condition in ("normal", "active_crohns"):
        slide = simulate_slide(SlideSpec("X_1", "X", "ascending_colon", condition, 0), params)
        lp = slide.nuclei.filter(pl.col("tissue_region") == "lamina_propria")
        share[condition] = lp["cell_type"].is_in(list(immune)).mean()
    assert share["active_crohns"] > share["normal"] + 0.1


def test_slide_image_is_uint16_with_27_stains() -> None:
    params = CohortParams(n_patients=1, n_slides=1, slide_px=256, seed=0)
    slide = simulate_slide(plan_cohort(params)[0], params)
    assert slide.image.shape == (27, 256, 256)
    assert slide.image.dtype == np.uint16
    assert slide.labels.dtype == np.int32
    assert slide.mpp == 0.32
    assert slide.image.min() > 0  # background and noise everywhere
