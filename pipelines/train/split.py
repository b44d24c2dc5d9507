"""Patient-level cross-validation folds (§2.4): every patient is tested once, validated once.

The patients are dealt into `n_folds` groups. Fold k tests group k, validates on group k+1
(mod n_folds) and trains on the rest, so with 20 patients and 5 folds every fold has 12 train,
4 validation and 4 test patients (60/20/20) and the 5 test sets partition the cohort. Each group
must hold both sites and both healthy (condition `normal`) and diseased patients; then every
train, validation and test set does too. The deal is a seeded, stratified search: the same
manifest and seed always give the same folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.errors import ConfigurationError
from storage.manifest import CONDITIONS, SITES

__all__ = ["CONDITIONS", "SITES"]  # the manifest's vocabulary, re-exported for the split
HEALTHY_CONDITION = "normal"
ROLES: tuple[str, ...] = ("train", "validation", "test")

FOLDS_SCHEMA = {"patient_id": pl.Utf8, "fold": pl.Int16, "role": pl.Utf8}


@dataclass(frozen=True)
class SplitParams:
    """How to deal patients into folds; `candidates` valid deals are scored, the best kept."""

    n_folds: int = 5
    seed: int = 0
    candidates: int = 64
    max_tries: int = 20_000


def patient_table(manifest: pl.DataFrame) -> pl.DataFrame:
    """One row per patient: `sites` (sorted list) and `diseased` (any slide not `normal`).

    A patient with slides of both sites covers both sites; one with slides of several conditions
    counts as diseased. Unknown sites or conditions are refused.
    """
    missing = {"slide_id", "patient_id", "site", "condition"} - set(manifest.columns)
    if missing:
        raise ConfigurationError(
            f"The slide manifest lacks column(s) {sorted(missing)}; materialise slide_manifest "
            "from a manifest.csv with slide_id, patient_id, site and condition."
        )
    if manifest.height == 0:
        raise ConfigurationError("The slide manifest is empty: there are no patients to split.")
    for column, allowed in (("site", SITES), ("condition", CONDITIONS)):
        bad = manifest.filter(~pl.col(column).is_in(list(allowed)) | pl.col(column).is_null())
        if bad.height:
            raise ConfigurationError(
                f"Slide {bad['slide_id'][0]!r} has {column} {bad[column][0]!r}; "
                f"use one of {list(allowed)} in the manifest."
            )
    if manifest["patient_id"].null_count():
        slide = manifest.filter(pl.col("patient_id").is_null())["slide_id"][0]
        raise ConfigurationError(f"Slide {slide!r} has no patient_id in the manifest.")
    return (
        manifest.group_by("patient_id")
        .agg(
            pl.col("site").unique().sort().alias("sites"),
            (pl.col("condition") != HEALTHY_CONDITION).any().alias("diseased"),
            pl.len().alias("n_slides"),
        )
        .sort("patient_id")
    )


def _check_feasible(patients: pl.DataFrame, n_folds: int) -> None:
    n = patients.height
    counts = {
        site: int(patients["sites"].list.contains(site).sum()) for site in SITES
    } | {
        "healthy": int((~patients["diseased"]).sum()),
        "diseased": int(patients["diseased"].sum()),
    }
    short = {k: v for k, v in counts.items() if v < n_folds}
    if n_folds < 3:
        raise ConfigurationError(
            f"{n_folds} folds cannot give separate train, validation and test sets; use >= 3."
        )
    if n < 2 * n_folds or short:
        raise ConfigurationError(
            f"{n} patients ({counts}) cannot fill {n_folds} folds: every test and validation set "
            f"needs both sites and both healthy and diseased patients, so each of these groups "
            f"needs at least {n_folds} patients and the cohort at least {2 * n_folds}. "
            "Add patients or lower n_folds."
        )


def _group_ok(sites: list[set[str]], diseased: np.ndarray, members: np.ndarray) -> bool:
    covered = set().union(*(sites[i] for i in members)) if len(members) else set()
    flags = diseased[members]
    return covered >= set(SITES) and bool(flags.any()) and bool((~flags).any())


def _imbalance(strata: np.ndarray, groups: np.ndarray, n_folds: int) -> float:
    """Squared deviation of each group's stratum counts from an even share."""
    n_strata = int(strata.max()) + 1
    table = np.zeros((n_folds, n_strata))
    np.add.at(table, (groups, strata), 1)
    expected = table.sum(axis=0, keepdims=True) / n_folds
    return float(((table - expected) ** 2).sum())


def assign_groups(patients: pl.DataFrame, params: SplitParams = SplitParams()) -> np.ndarray:
    """Group (0..n_folds-1) of each patient row: sizes differ by at most one, every group
    holds both sites and both healthy and diseased patients, strata spread evenly."""
    _check_feasible(patients, params.n_folds)
    k = params.n_folds
    sites = [set(s) for s in patients["sites"].to_list()]
    diseased = patients["diseased"].to_numpy().astype(bool)
    site_code = np.array([0 if s == {SITES[0]} else 1 if s == {SITES[1]} else 2 for s in sites])
    strata = site_code * 2 + diseased.astype(int)
    rng = np.random.default_rng(params.seed)
    best: tuple[float, np.ndarray] | None = None
    found = 0
    for _ in range(params.max_tries):
        # Stratified deal: shuffle within strata, strata in random order, then round-robin
        # from a random start so group sizes differ by at most one.
        order = np.concatenate(
            [rng.permutation(np.flatnonzero(strata == s)) for s in rng.permutation(6)]
        )
        groups = np.empty(len(order), dtype=np.int64)
        groups[order] = (np.arange(len(order)) + rng.integers(k)) % k
        if not all(_group_ok(sites, diseased, np.flatnonzero(groups == g)) for g in range(k)):
            continue
        score = _imbalance(strata, groups, k)
        if best is None or score < best[0]:
            best = (score, groups)
        found += 1
        if found >= params.candidates:
            break
    if best is None:
        raise ConfigurationError(
            f"No deal of {patients.height} patients into {k} folds gives every set both sites "
            f"and both healthy and diseased patients after {params.max_tries} tries; "
            "add patients of the rare site or condition, or lower n_folds."
        )
    return best[1]


def make_folds(manifest: pl.DataFrame, params: SplitParams = SplitParams()) -> pl.DataFrame:
    """The folds table: one row per (patient_id, fold) with role train | validation | test.

    Fold k tests group k and validates on group (k + 1) mod n_folds; deterministic from
    `params.seed`.
    """
    patients = patient_table(manifest)
    groups = assign_groups(patients, params)
    k = params.n_folds
    rows: list[tuple[str, int, str]] = []
    for fold in range(k):
        for pid, group in zip(patients["patient_id"].to_list(), groups.tolist(), strict=True):
            role = "test" if group == fold else "validation" if group == (fold + 1) % k else "train"
            rows.append((pid, fold, role))
    return pl.DataFrame(rows, schema=FOLDS_SCHEMA, orient="row").sort("fold", "role", "patient_id")


def check_folds(folds: pl.DataFrame, manifest: pl.DataFrame) -> list[str]:
    """Problems with a folds table against the manifest; an empty list means it is sound."""
    patients = patient_table(manifest)
    info = {r["patient_id"]: r for r in patients.iter_rows(named=True)}
    problems: list[str] = []
    dupes = folds.group_by("patient_id", "fold").len().filter(pl.col("len") > 1)
    if dupes.height:
        pid, fold = dupes["patient_id"][0], dupes["fold"][0]
        problems.append(f"patient {pid} is in two sets of fold {fold}")
    for (fold, role), part in folds.group_by("fold", "role", maintain_order=True):
        members = [info[p] for p in part["patient_id"].to_list() if p in info]
        covered = set().union(*(set(m["sites"]) for m in members)) if members else set()
        flags = {bool(m["diseased"]) for m in members}
        if covered < set(SITES) or flags != {True, False}:
            problems.append(f"fold {fold} {role} lacks a site or a healthy/diseased patient")
    tests = folds.filter(pl.col("role") == "test")
    if tests["patient_id"].n_unique() != tests.height or set(tests["patient_id"]) != set(info):
        problems.append("the test sets do not partition the patients")
    return problems


def fold_patients(folds: pl.DataFrame, fold: int, role: str) -> list[str]:
    """Patient ids of one role in one fold, sorted."""
    if role not in ROLES:
        raise ConfigurationError(f"Role {role!r} is not one of {list(ROLES)}.")
    part = folds.filter((pl.col("fold") == fold) & (pl.col("role") == role))
    if part.height == 0:
        raise ConfigurationError(
            f"Fold {fold} has no {role} patients: re-materialise fold_split for this cohort."
        )
    return sorted(part["patient_id"].to_list())


def fold_slides(
    folds: pl.DataFrame, manifest: pl.DataFrame, fold: int, role: str
) -> list[str]:
    """Slide ids of one role in one fold, sorted (every slide of each patient)."""
    patients = fold_patients(folds, fold, role)
    return sorted(manifest.filter(pl.col("patient_id").is_in(patients))["slide_id"].to_list())


def held_out_fold(folds: pl.DataFrame, patient_id: str) -> int | None:
    """The fold whose test set holds `patient_id` out (None: the patient is in no test set)."""
    hit = folds.filter((pl.col("role") == "test") & (pl.col("patient_id") == patient_id))
    return int(hit["fold"][0]) if hit.height else None
