"""Declarative automation: a changed slide flows through every slide stage of that slide only,
an unchanged one starts nothing, the cohort views wait for the slides, and the nightly pass
retries what is missing."""

from __future__ import annotations

import datetime as dt
import functools

import dagster as dg
import pytest

from dagster_project.automation import NIGHTLY_CRON
from dagster_project.definitions import defs
from dagster_project.defs.automation.schedules import weekly_source_recheck
from dagster_project.defs.automation.sensors import automation
from dagster_project.defs.slides.assets import slide_image, slide_manifest
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.resources import DataRoot
from tests.ingest_fixtures import stain_stack, write_ome_tiff

SLIDE_STAGES = ("nucleus_mask", "nucleus_features", "stain_thresholds", "nucleus_labels",
                "virtual_he", "nucleus_patches", "nucleus_anndata")
COHORT_VIEWS = ("nucleus_catalog", "patch_gallery", "cohort_anndata")


@functools.cache
def _defs() -> dg.Definitions:
    return defs()


def _requested(result) -> set[tuple[str, str | None]]:
    return {(ap.asset_key.to_user_string(), ap.partition_key)
            for ap in result._requested_asset_partitions}


def _chain(slide_id: str) -> set[tuple[str, str]]:
    return {(asset, slide_id) for asset in SLIDE_STAGES}


class Cohort:
    """Two tiny inbox slides, the project's definitions and an ephemeral instance, ticked."""

    def __init__(self, root) -> None:
        self.inbox = root / "inbox"
        self.inbox.mkdir()
        for i, slide_id in enumerate(("s1", "s2")):
            self.write(slide_id, seed=i)
        self.resources = {"data_root": DataRoot(root=str(root)),
                          "slide_inputs": SlideInputs(settle_seconds=0.0)}
        self.defs = _defs()
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None

    def write(self, slide_id: str, seed: int) -> None:
        write_ome_tiff(self.inbox / f"{slide_id}.ome.tif", stain_stack(2, 64, 64, seed=seed),
                       ["DAPI", "CD4"])

    def materialise(self, asset, partition_key: str | None = None) -> None:
        result = dg.materialize([slide_manifest, slide_image], selection=[asset],
                                partition_key=partition_key, instance=self.instance,
                                resources=self.resources)
        assert result.success

    def report(self, pairs) -> None:
        """Record materialisations as the requested runs would have (in dependency order)."""
        order = {a: i for i, a in enumerate(("slide_image", *SLIDE_STAGES, *COHORT_VIEWS,
                                             "classifier", "nucleus_inference"))}
        for asset, partition in sorted(pairs, key=lambda p: (order[p[0]], p[1] or "")):
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=asset, partition=partition))

    def tick(self, when: dt.datetime | None = None) -> set[tuple[str, str | None]]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=when)
        self.cursor = result.cursor
        return _requested(result)


@pytest.fixture
def cohort(tmp_path) -> Cohort:
    cohort = Cohort(tmp_path)
    cohort.materialise(slide_manifest)  # registers the partitions s1, s2
    assert cohort.tick() == set()  # first evaluation: only records the state
    return cohort


def test_sensor_is_on_by_default_and_sees_every_condition() -> None:
    assert automation.name == "automation"
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    graph = _defs().resolve_asset_graph()
    with_condition = {k.to_user_string() for k in graph.get_all_asset_keys()
                      if graph.get(k).automation_condition is not None}
    assert {"slide_manifest", "slide_image", *SLIDE_STAGES, *COHORT_VIEWS,
            "nucleus_inference"} <= with_condition
    targeted = automation.asset_selection.resolve(graph)
    assert {dg.AssetKey(k) for k in with_condition} <= targeted


@pytest.mark.slow
def test_only_the_changed_slide_flows_downstream(cohort) -> None:
    views = {("nucleus_catalog", None), ("patch_gallery", None), ("cohort_anndata", None)}
    cohort.materialise(slide_image, "s1")
    assert cohort.tick() == _chain("s1")  # s2 is unchanged: nothing of it

    cohort.report(_chain("s1"))  # the run finished: the cohort views once, no slide stage again
    assert cohort.tick() == views
    cohort.report(views)

    cohort.materialise(slide_image, "s1")  # re-ingested, same file: same data version
    assert cohort.tick() == set()

    cohort.write("s1", seed=7)  # the file's content changed
    cohort.materialise(slide_image, "s1")
    assert cohort.tick() == _chain("s1")
    cohort.report(_chain("s1"))
    assert cohort.tick() == views
    cohort.report(views)

    # the manual thresholds CSV changed for s1 only: re-label s1, re-cut its patches
    cohort.instance.report_runless_asset_event(dg.AssetObservation(
        asset_key="manual_thresholds", partition="s1", tags={"dagster/data_version": "v2"}))
    assert cohort.tick() == {("stain_thresholds", "s1"), ("nucleus_labels", "s1"),
                             ("nucleus_patches", "s1"), ("nucleus_anndata", "s1")}


@pytest.mark.slow
def test_new_partition_is_ingested_and_nightly_pass_retries_missing(cohort) -> None:
    cohort.instance.add_dynamic_partitions("slides", ["s3"])
    assert cohort.tick() == {("slide_image", "s3")} | _chain("s3")

    # s1 and s2 were never ingested (the sensor was off when they arrived): the nightly pass
    # retries them, and nothing runs before it
    cohort.report({("slide_image", "s3")} | _chain("s3"))
    cohort.tick()
    hour, minute = int(NIGHTLY_CRON.split()[1]), int(NIGHTLY_CRON.split()[0])
    night = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(
        hour=hour, minute=minute, second=30, microsecond=0)
    assert cohort.tick(night - dt.timedelta(minutes=5)) == set()
    retried = cohort.tick(night)
    assert {("slide_image", "s1"), ("slide_image", "s2")} <= retried
    assert not {p for p in retried if p[1] == "s3"}


@pytest.mark.slow
def test_inference_waits_for_a_classifier_then_runs_for_the_slides_that_lack_it(cohort) -> None:
    views = {("nucleus_catalog", None), ("patch_gallery", None), ("cohort_anndata", None)}
    cohort.materialise(slide_image, "s1")
    assert cohort.tick() == _chain("s1")  # no fold trained yet: no inference
    cohort.report(_chain("s1"))
    assert cohort.tick() == views
    cohort.report(views)
    assert cohort.tick() == set()

    cohort.report({("classifier", "0")})  # the first fold is trained
    assert cohort.tick() == {("nucleus_inference", "s1")}  # s2 has no inputs yet
    cohort.report({("nucleus_inference", "s1")})
    assert cohort.tick() == set()

    cohort.instance.add_dynamic_partitions("slides", ["s3"])  # from now on, part of the chain
    assert cohort.tick() == ({("slide_image", "s3"), ("nucleus_inference", "s3")}
                             | _chain("s3"))


def test_weekly_recheck_reingests_every_ingested_slide_once_a_week() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("slides", ["s1", "s2", "s3"])
        for slide_id in ("s1", "s3"):  # s2 never ingested: the nightly pass's business
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="slide_image", partition=slide_id))
        sunday = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)
        requests = weekly_source_recheck(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=sunday))
        assert [r.partition_key for r in requests] == ["s1", "s3"]
        assert requests[0].run_key == "recheck:s1:2026-W48"
