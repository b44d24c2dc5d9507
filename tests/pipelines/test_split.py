"""Patient-level folds: sizes, coverage of sites and conditions, determinism, clear errors."""

import polars as pl
import pytest

from pipelines.errors import ConfigurationError
from pipelines.train.split import SITES, SplitParams, check_folds, fold_slides, make_folds
from tests.classifier_fixtures import cohort_manifest


def _sets(folds: pl.DataFrame, fold: int, role: str) -> set[str]:
    part = folds.filter((pl.col("fold") == fold) & (pl.col("role") == role))
    return set(part["patient_id"].to_list())


def test_twenty_patients_give_12_4_4_with_both_sites_and_conditions() -> None:
    manifest = cohort_manifest(20)
    folds = make_folds(manifest)
    patients = set(manifest["patient_id"].to_list())
    site = dict(manifest.select("patient_id", "site").unique().iter_rows())
    healthy = dict(
        manifest.select("patient_id", pl.col("condition") == "normal").unique().iter_rows()
    )
    tests = []
    for fold in range(5):
        train, val, test = (_sets(folds, fold, r) for r in ("train", "validation", "test"))
        assert (len(train), len(val), len(test)) == (12, 4, 4)
        assert train | val | test == patients
        assert not (train & val) and not (train & test) and not (val & test)
        for members in (train, val, test):
            assert {site[p] for p in members} == set(SITES)
            assert {healthy[p] for p in members} == {True, False}
        tests.append(test)
    # The five test sets partition the patients; each patient validates exactly once too.
    assert set().union(*tests) == patients and sum(map(len, tests)) == 20
    vals = [_sets(folds, f, "validation") for f in range(5)]
    assert set().union(*vals) == patients and sum(map(len, vals)) == 20
    assert check_folds(folds, manifest) == []
    assert folds.schema == {"patient_id": pl.Utf8, "fold": pl.Int16, "role": pl.Utf8}


def test_split_is_deterministic_from_the_seed() -> None:
    manifest = cohort_manifest(20)
    a = make_folds(manifest, SplitParams(seed=3))
    assert a.equals(make_folds(manifest.sample(fraction=1.0, shuffle=True, seed=1),
                               SplitParams(seed=3)))
    others = [make_folds(manifest, SplitParams(seed=s)) for s in range(4, 8)]
    assert any(not a.equals(o) for o in others)


@pytest.mark.parametrize(("n", "sizes"), [(30, {(18, 6, 6)}), (23, None)])
def test_other_cohort_sizes_scale_60_20_20(n: int, sizes: set | None) -> None:
    manifest = cohort_manifest(n)
    folds = make_folds(manifest)
    got = set()
    for fold in range(5):
        got.add(tuple(len(_sets(folds, fold, r)) for r in ("train", "validation", "test")))
    if sizes is not None:
        assert got == sizes
    tests = [len(_sets(folds, f, "test")) for f in range(5)]
    assert sum(tests) == n and max(tests) - min(tests) <= 1
    assert check_folds(folds, manifest) == []


def test_patient_with_slides_of_both_sites_counts_for_both() -> None:
    manifest = cohort_manifest(20)
    extra = pl.DataFrame({"slide_id": ["P00-X"], "patient_id": ["P00"],
                          "site": ["terminal_ileum"], "condition": ["normal"]})
    folds = make_folds(pl.concat([manifest, extra]))
    assert folds["patient_id"].n_unique() == 20
    assert check_folds(folds, pl.concat([manifest, extra])) == []
    fold = folds.filter((pl.col("patient_id") == "P00") & (pl.col("role") == "test"))["fold"][0]
    assert "P00-X" in fold_slides(folds, pl.concat([manifest, extra]), fold, "test")


def test_too_small_cohorts_are_refused_clearly() -> None:
    with pytest.raises(ConfigurationError, match="cannot fill 5 folds"):
        make_folds(cohort_manifest(8))
    healthy_only = cohort_manifest(20).with_columns(pl.lit("normal").alias("condition"))
    with pytest.raises(ConfigurationError, match="diseased"):
        make_folds(healthy_only)
    few_ileum = cohort_manifest(20).filter(
        (pl.col("site") == "ascending_colon") | pl.col("patient_id").is_in(["P01", "P03"])
    )
    with pytest.raises(ConfigurationError, match="terminal_ileum"):
        make_folds(few_ileum)


def test_unknown_site_names_the_slide() -> None:
    manifest = cohort_manifest(20).with_columns(
        pl.when(pl.col("slide_id") == "P04-S0").then(pl.lit("colon"))
        .otherwise(pl.col("site")).alias("site"))
    with pytest.raises(ConfigurationError, match="P04-S0"):
        make_folds(manifest)
