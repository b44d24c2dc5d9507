"""The labels stage in Dagster: thresholds and labels per slide, the catalog, and re-labelling
only the slides whose manual thresholds changed."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from dagster._core.definitions.data_version import StaleStatus
from dagster._core.definitions.observe import observe
from dagster._utils.test.data_versions import get_stale_status_resolver

from dagster_project.defs.labels.assets import (
    catalog_matches_label_table,
    manual_thresholds,
    nucleus_catalog,
    nucleus_labels,
    stain_thresholds,
)
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.resources import DataRoot
from storage.catalog import query_catalog
from storage.layout import DataLayout
from storage.parquet_dataset import read_slide_partition, write_slide_partition
from storage.thresholds_csv import read_thresholds_csv
from tests.labels_fixtures import make_slide

SLIDES = ("S1", "S2")
ASSETS = [manual_thresholds, stain_thresholds, nucleus_labels, nucleus_catalog,
          catalog_matches_label_table]


def _resources(layout: DataLayout, figures: bool = True) -> dict:
    return {"data_root": DataRoot(root=str(layout.root)),
            "label_settings": LabelSettings(review_figures=figures)}


def _stale(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    resolver = get_stale_status_resolver(instance, [manual_thresholds, stain_thresholds,
                                                    nucleus_labels])
    out: dict[str, set[str]] = {}
    for asset in ("stain_thresholds", "nucleus_labels"):
        out[asset] = {s for s in SLIDES
                      if resolver.get_status(dg.AssetKey(asset), s) == StaleStatus.STALE}
    return out


@pytest.fixture
def stage(tmp_path) -> tuple[DataLayout, dg.DagsterInstance]:
    layout = DataLayout(tmp_path / "data")
    for i, slide_id in enumerate(SLIDES):
        features, _ = make_slide(slide_id, 300, 1.0 + i, seed=20 + i)
        write_slide_partition(layout.features_dir, slide_id, features)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", list(SLIDES))
    return layout, instance


def _run_slide(layout: DataLayout, instance: dg.DagsterInstance, slide_id: str,
               assets: list, figures: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(ASSETS, selection=assets, partition_key=slide_id, instance=instance,
                          resources=_resources(layout, figures))


def test_thresholds_labels_and_catalog_materialise(stage) -> None:
    layout, instance = stage
    for slide_id in SLIDES:
        result = _run_slide(layout, instance, slide_id, [stain_thresholds, nucleus_labels])
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert len(checks) == 4 and all(c.passed for c in checks)
    result = dg.materialize(ASSETS, selection=[nucleus_catalog, catalog_matches_label_table],
                            instance=instance, resources=_resources(layout))
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    assert (layout.figures_dir("thresholds") / "S2.png").read_bytes()[:4] == b"\x89PNG"
    labels = read_slide_partition(layout.labels_dir, "S1")
    assert labels.height == 300
    thresholds = read_slide_partition(layout.thresholds_dir, "S1")
    assert set(thresholds["source"]) == {"auto"}
    assert labels["threshold_version"].unique().to_list() == [thresholds["threshold_version"][0]]
    counts = query_catalog(layout.catalog_db, "SELECT sum(n_nuclei) AS n FROM cell_type_counts")
    assert counts["n"][0] == sum(
        read_slide_partition(layout.labels_dir, s)["cell_type"].is_not_null().sum()
        for s in SLIDES
    )
    metadata = result.asset_materializations_for_node("nucleus_catalog")[0].metadata
    assert metadata["n_stains"].value == 17
    suggested = read_thresholds_csv(layout.root / "thresholds_suggested.csv")
    assert suggested.height == 2 * 17
    assert suggested["note"][0].startswith("suggested: otsu_log1p")
    s1 = read_slide_partition(layout.thresholds_dir, "S1").sort("stain_key")
    assert suggested.filter(pl.col("slide_id") == "S1")["threshold"].to_list() == \
        s1["threshold"].to_list()


def test_editing_the_csv_relabels_only_the_touched_slide(stage) -> None:
    layout, instance = stage
    resources = _resources(layout, figures=False)
    observe([manual_thresholds], instance=instance, resources=resources)
    for slide_id in SLIDES:
        assert _run_slide(layout, instance, slide_id, [stain_thresholds, nucleus_labels],
                          figures=False).success
    assert _stale(instance) == {"stain_thresholds": set(), "nucleus_labels": set()}

    csv = layout.root / "thresholds.csv"
    csv.write_text("slide_id,stain,threshold,set_by,note\nS2,CD45,1e9,ana,too bright\n")
    observe([manual_thresholds], instance=instance, resources=resources)
    assert _stale(instance) == {"stain_thresholds": {"S2"}, "nucleus_labels": set()}

    before = read_slide_partition(layout.labels_dir, "S2")
    assert _run_slide(layout, instance, "S2", [stain_thresholds], figures=False).success
    assert _stale(instance) == {"stain_thresholds": set(), "nucleus_labels": {"S2"}}
    assert _run_slide(layout, instance, "S2", [nucleus_labels], figures=False).success
    assert _stale(instance) == {"stain_thresholds": set(), "nucleus_labels": set()}
    after = read_slide_partition(layout.labels_dir, "S2")
    assert after["threshold_version"][0] != before["threshold_version"][0]
    assert (before["cell_type"] == "leukocyte").sum() > 0
    assert (after["cell_type"] == "leukocyte").sum() == 0
    manual = read_slide_partition(layout.thresholds_dir, "S2").filter(pl.col("stain") == "CD45")
    assert manual.select("threshold", "source", "set_by").row(0) == (1e9, "manual", "ana")

    # a note-only edit re-computes S2's thresholds but leaves its labels fresh
    csv.write_text("slide_id,stain,threshold,set_by,note\nS2,CD45,1e9,ana,checked again\n")
    observe([manual_thresholds], instance=instance, resources=resources)
    assert _stale(instance) == {"stain_thresholds": {"S2"}, "nucleus_labels": set()}
    assert _run_slide(layout, instance, "S2", [stain_thresholds], figures=False).success
    assert _stale(instance) == {"stain_thresholds": set(), "nucleus_labels": set()}


def test_sensor_requests_runs_only_for_slides_whose_rows_changed(tmp_path) -> None:
    from dagster_project.defs.labels.sensors import thresholds_csv_sensor

    layout = DataLayout(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", ["S1", "S2", "S3"])
    csv = tmp_path / "thresholds.csv"
    csv.write_text("slide_id,stain,threshold\nS1,CD4,10\nS2,CD8,20\n")

    def tick(cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                          resources=_resources(layout))
        return thresholds_csv_sensor(context)

    first = tick(None)
    assert not first.run_requests
    csv.write_text("slide_id,stain,threshold\nS1,CD4,10\nS2,CD8,25\nS3,CD3d,5\n")
    second = tick(first.cursor)
    assert sorted(r.partition_key for r in second.run_requests) == ["S2", "S3"]
    assert not tick(second.cursor).run_requests
