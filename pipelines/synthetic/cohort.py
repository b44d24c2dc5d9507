"""The simulated cohort: patients (site, condition), their slides, and each slide's truth."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from multiprocessing import get_context

import numpy as np
import polars as pl

from pipelines.errors import ConfigurationError
from pipelines.stains import stain_key
from pipelines.synthetic._table1 import table1_cell_type
from pipelines.synthetic.panel import STAINS
from pipelines.synthetic.render import render_field
from pipelines.synthetic.tissue import PROFILE_NAMES, REGION_NAMES, build_tissue

SITES: tuple[str, ...] = ("ascending_colon", "terminal_ileum")
CONDITIONS: tuple[str, ...] = ("normal", "inactive_crohns", "active_crohns")
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class CohortParams:
    """What to simulate. Defaults are the demo cohort: 20 patients (10 per site, each site
    4 normal + 3 inactive + 3 active Crohn's), 28 slides of 1024 x 1024 px at 0.32 µm/px."""

    n_patients: int = 20
    n_slides: int = 28
    slide_px: int = 1024
    seed: int = 0
    mpp: float = 0.32

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "generator_version": GENERATOR_VERSION}


@dataclass(frozen=True)
class SlideSpec:
    slide_id: str
    patient_id: str
    site: str
    condition: str
    index: int  # position in the cohort; with the seed it fixes every random draw


@dataclass(frozen=True)
class SimulatedSlide:
    """One simulated slide: `image` (stain, y, x) uint16 in `stains` order, `labels` (y, x)
    int32 nucleus instance mask, and `nuclei`, one truth row per label (see `truth_frame`)."""

    slide_id: str
    patient_id: str
    site: str
    condition: str
    mpp: float
    stains: tuple[str, ...]
    image: np.ndarray
    labels: np.ndarray
    nuclei: pl.DataFrame


def plan_cohort(params: CohortParams) -> tuple[SlideSpec, ...]:
    """Patients alternate between sites; within a site 40 % are normal and the rest split
    between inactive and active Crohn's; each patient has 1-4 slides (n_slides in total)."""
    n_p, n_s = params.n_patients, params.n_slides
    if n_p < 1 or not n_p <= n_s <= 4 * n_p:
        raise ConfigurationError(
            f"A cohort of {n_p} patient(s) cannot have {n_s} slide(s): each patient has 1-4 "
            "slides, so choose n_patients <= n_slides <= 4 * n_patients."
        )
    if params.slide_px < 128:
        raise ConfigurationError(f"slide_px={params.slide_px} is too small; use at least 128.")
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 7_919]))
    sites = [SITES[i % 2] for i in range(n_p)]
    conditions: list[str] = [""] * n_p
    for site in SITES:
        members = [i for i in range(n_p) if sites[i] == site]
        k = len(members)
        n_normal = max(1, round(0.4 * k)) if k else 0
        n_active = (k - n_normal) // 2
        labels = (["normal"] * n_normal + ["inactive_crohns"] * (k - n_normal - n_active)
                  + ["active_crohns"] * n_active)
        for i, cond in zip(members, labels, strict=True):
            conditions[i] = cond
    counts = np.ones(n_p, dtype=int)
    for _ in range(n_s - n_p):
        # Keep the two sites' slide totals close (the paper has 14 + 14), cap 4 per patient.
        per_site = [counts[[i for i in range(n_p) if sites[i] == s]].sum() for s in SITES]
        site = SITES[int(np.argmin(per_site))]
        pool = [i for i in range(n_p) if sites[i] == site and counts[i] < 4]
        if not pool:
            pool = [i for i in range(n_p) if counts[i] < 4]
        counts[pool[int(rng.integers(len(pool)))]] += 1
    specs: list[SlideSpec] = []
    width = max(2, len(str(n_p)))
    for i in range(n_p):
        patient_id = f"P{i + 1:0{width}d}"
        for j in range(int(counts[i])):
            specs.append(SlideSpec(f"{patient_id}_S{j + 1}", patient_id, sites[i],
                                   conditions[i], len(specs)))
    return tuple(specs)


def simulate_slide(spec: SlideSpec, params: CohortParams) -> SimulatedSlide:
    """Simulate one slide; the same (params, spec) always gives the same arrays."""
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 104_729, spec.index]))
    size = (params.slide_px, params.slide_px)
    tissue = build_tissue(size, params.mpp, spec.site, spec.condition, rng)
    field = render_field(tissue, rng, params.mpp)
    turns = int(rng.integers(4))  # muscularis on any side
    image = np.ascontiguousarray(np.rot90(field.image, turns, axes=(1, 2)))
    labels = np.ascontiguousarray(np.rot90(field.labels, turns))
    nuclei = truth_frame(labels, field.positive, field.cell_type,
                         [PROFILE_NAMES[p] for p in field.profile.tolist()],
                         [REGION_NAMES[r] for r in field.region.tolist()])
    return SimulatedSlide(spec.slide_id, spec.patient_id, spec.site, spec.condition,
                          params.mpp, STAINS, image, labels, nuclei)


def simulate_cohort(params: CohortParams, workers: int = 1) -> Iterator[SimulatedSlide]:
    """Simulate the cohort's slides in order; `workers` > 1 renders ahead in that many
    processes (at most workers + 1 slides in memory). The result does not depend on it."""
    specs = plan_cohort(params)
    if workers <= 1 or len(specs) <= 1:
        for spec in specs:
            yield simulate_slide(spec, params)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: deque[Future[SimulatedSlide]] = deque()
        queue = iter(specs)
        for spec in islice(queue, workers + 1):
            pending.append(pool.submit(simulate_slide, spec, params))
        while pending:
            slide = pending.popleft().result()
            for spec in islice(queue, 1):
                pending.append(pool.submit(simulate_slide, spec, params))
            yield slide


def truth_frame(labels: np.ndarray, positive: np.ndarray, cell_type: list[str | None],
                profile: list[str], region: list[str]) -> pl.DataFrame:
    """Truth per nucleus: true_label, centroid_y_px/centroid_x_px (mean pixel position in the
    mask), area_px, cell_type (Table 1 of the true positivity; null when excluded), profile
    (the simulated cell kind, e.g. paneth), tissue_region, then pos_<stain_key> per stain."""
    n = positive.shape[0]
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:]
    ys, xs = np.divmod(np.arange(flat.size), labels.shape[1])
    cy = np.bincount(flat, weights=ys, minlength=n + 1)[1:] / np.maximum(area, 1)
    cx = np.bincount(flat, weights=xs, minlength=n + 1)[1:] / np.maximum(area, 1)
    columns: dict[str, pl.Series] = {
        "true_label": pl.Series(np.arange(1, n + 1, dtype=np.int32)),
        "centroid_y_px": pl.Series(cy), "centroid_x_px": pl.Series(cx),
        "area_px": pl.Series(area.astype(np.int64)),
        "cell_type": pl.Series(cell_type, dtype=pl.Utf8),
        "profile": pl.Series(profile, dtype=pl.Utf8),
        "tissue_region": pl.Series(region, dtype=pl.Utf8),
    }
    for j, stain in enumerate(STAINS):
        columns[f"pos_{stain_key(stain)}"] = pl.Series(positive[:, j])
    return pl.DataFrame({k: v.alias(k) for k, v in columns.items()})


def truth_problems(labels: np.ndarray, nuclei: pl.DataFrame) -> list[str]:
    """Inconsistencies between a truth mask and its table (empty when they agree): every
    label has one row, areas match, and each cell_type is Table 1 of the row's positivity."""
    problems: list[str] = []
    n = nuclei.height
    present = np.unique(labels)
    if present.size != n + 1 or present[-1] != n:
        problems.append(f"mask has labels {present.size - 1} (max {present[-1]}), table {n}")
        return problems
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    if nuclei["true_label"].to_list() != list(range(1, n + 1)):
        problems.append("true_label is not 1..n in order")
    elif "area_px" in nuclei.columns and area.tolist() != nuclei["area_px"].to_list():
        problems.append("area_px differs from the mask")
    keys = [f"pos_{stain_key(s)}" for s in STAINS]
    missing = [k for k in keys if k not in nuclei.columns]
    if missing:
        return [*problems, f"missing columns {missing}"]
    bad = sum(
        table1_cell_type(dict(zip(STAINS, row[1:], strict=True))) != row[0]
        for row in nuclei.select("cell_type", *keys).unique().iter_rows()
    )
    if bad:
        problems.append(f"{bad} positivity pattern(s) whose cell_type is not Table 1's")
    return problems
