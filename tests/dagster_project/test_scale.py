"""A cohort of 200 small synthetic slides through the inbox sensor: every slide registered and
requested exactly once, nothing more on the next tick; after ingest, nuclei and labels, the row
counts add up (nuclei in the masks = feature rows = labelled + excluded rows) and no nucleus_id
repeats across the cohort.

`NUCLEUS_SUBTYPING_SCALE_SLIDES` changes the number of slides (default 200).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import dagster as dg
import numpy as np
import polars as pl
import pytest

from dagster_project.defs.slides.assets import slide_manifest
from dagster_project.defs.slides.sensors import process_slide_job, slide_inbox_sensor
from pipelines.ids import nucleus_ids
from pipelines.synthetic import CohortParams, simulate_cohort
from storage.cohort_files import write_cohort
from storage.layout import DataLayout
from storage.mask_store import open_mask
from storage.parquet_dataset import read_slide_partition, scan_dataset, slide_ids
from tests.robustness_child import label_slides, resources

pytestmark = pytest.mark.slow

N_SLIDES = int(os.environ.get("NUCLEUS_SUBTYPING_SCALE_SLIDES", "200"))
SLIDE_PX = 128
WORKERS = 2


def _tick(layout: DataLayout, instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources=resources(layout.root))
    return slide_inbox_sensor(context)


def test_cohort_through_the_inbox_sensor(tmp_path) -> None:
    layout = DataLayout(tmp_path / "data")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    params = CohortParams(n_patients=max(1, N_SLIDES // 2), n_slides=N_SLIDES,
                          slide_px=SLIDE_PX, seed=11)
    write_cohort(tmp_path / "incoming", simulate_cohort(params, 1), params.as_dict())
    layout.inbox_dir.mkdir(parents=True)
    for slide in sorted((tmp_path / "incoming" / "slides").iterdir()):
        os.link(slide, layout.inbox_dir / slide.name)  # dropped into the inbox
    timings["simulate"] = time.perf_counter() - started

    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    first = _tick(layout, instance, None)
    timings["sensor_first_tick"] = time.perf_counter() - started
    runs = [r for r in first.run_requests if r.job_name == process_slide_job.name]
    requested = [r.partition_key for r in runs]
    assert len(requested) == N_SLIDES and len(set(requested)) == N_SLIDES
    assert len({r.run_key for r in runs}) == N_SLIDES
    (add,) = first.dynamic_partitions_requests
    assert sorted(add.partition_keys) == sorted(requested)
    instance.add_dynamic_partitions("slides", list(add.partition_keys))  # as the daemon does

    started = time.perf_counter()
    second = _tick(layout, instance, first.cursor)
    timings["sensor_second_tick"] = time.perf_counter() - started
    assert not second.run_requests and not second.dynamic_partitions_requests

    # the manifest run, then each requested slide's stages, each slide exactly once
    assert dg.materialize([slide_manifest], instance=instance,
                          resources=resources(layout.root)).success
    started = time.perf_counter()
    chunks = [requested[i::WORKERS] for i in range(WORKERS)]
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        per_stage = list(pool.map(label_slides, [str(layout.root)] * WORKERS, chunks))
    timings["process"] = time.perf_counter() - started

    started = time.perf_counter()
    assert slide_ids(layout.features_dir) == sorted(requested)
    assert slide_ids(layout.labels_dir) == sorted(requested)
    total = 0
    for slide_id in requested:
        mask = open_mask(layout.mask_zarr(slide_id)).read()
        in_mask = np.unique(mask[mask > 0])
        features = read_slide_partition(layout.features_dir, slide_id)
        labels = read_slide_partition(layout.labels_dir, slide_id)
        assert features.height == in_mask.size == labels.height, slide_id
        assert np.array_equal(np.sort(features["nucleus_id"].to_numpy()),
                              nucleus_ids(slide_id, in_mask))
        assert labels["nucleus_id"].sort().equals(features["nucleus_id"].sort())
        labelled = labels.filter(pl.col("class_index") >= 0)
        excluded = labels.filter(pl.col("class_index") == -1)
        assert labelled.height + excluded.height == labels.height
        assert labelled["cell_type"].null_count() == 0
        assert labelled["excluded_at_step"].null_count() == labelled.height
        assert excluded["cell_type"].null_count() == excluded.height
        assert excluded["excluded_at_step"].null_count() == 0
        total += features.height
    for dataset in (layout.features_dir, layout.labels_dir):
        ids = scan_dataset(dataset).select("nucleus_id").collect()["nucleus_id"]
        assert ids.len() == total and ids.n_unique() == total
    timings["check"] = time.perf_counter() - started

    stages = {k: round(sum(s[k] for s in per_stage) / N_SLIDES, 3) for k in per_stage[0]}
    print(f"\n{N_SLIDES} slides of {SLIDE_PX} px, {total} nuclei; seconds: "
          f"{ {k: round(v, 1) for k, v in timings.items()} }; "
          f"per slide and stage (one worker): {stages}")
