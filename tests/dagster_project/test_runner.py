"""The chain runner: how the graph is cut into stages, and what one slide's failure does to the
others when the runs go through the instance's queue."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import zarr
from dagster._core.instance.ref import InstanceRef

from dagster_project.resources import DATA_ROOT_ENV
from dagster_project.runner import config_parents, load_definitions, plan_stages
from storage.layout import DataLayout

SLIDE_CHAIN = ("slide_image", "nucleus_mask", "virtual_he", "nucleus_features",
               "stain_thresholds", "nucleus_labels", "nucleus_patches")


def test_every_asset_comes_after_its_inputs_and_the_slide_chain_is_one_stage() -> None:
    loaded = load_definitions()
    stages = plan_stages(loaded)
    where = {key: i for i, stage in enumerate(stages) for key in stage.asset_keys}
    graph = loaded.resolve_asset_graph()
    for key, index in where.items():
        for parent in graph.get(dg.AssetKey.from_user_string(key)).parent_keys:
            if parent.to_user_string() in where:
                assert where[parent.to_user_string()] <= index, (parent, key)
    # Side assets (models trained on the slides, the catalog, the gallery) never cut the slide
    # chain: one run per slide does all of it.
    chain_stage = stages[where["slide_image"]]
    assert chain_stage.partitions == "slides"
    assert set(SLIDE_CHAIN) <= set(chain_stage.asset_keys)
    assert stages[where["classifier"]].asset_keys == ("classifier",)
    assert where["nucleus_inference"] > where["classifier"]


def test_a_cyclegan_backend_trains_the_cyclegan_before_virtual_he() -> None:
    loaded = load_definitions()
    cyclegan = {"ops": {"virtual_he": {"config": {"backend": "cyclegan"}}}}
    assert config_parents({"ops": {"virtual_he": {"config": {"backend": "beer_lambert"}}}}) == {}
    assert config_parents({}) == {}
    extra = config_parents(cyclegan)
    assert extra == {"virtual_he": ("cyclegan_model",)}
    stages = plan_stages(loaded, extra)
    where = {key: i for i, stage in enumerate(stages) for key in stage.asset_keys}
    # the slides are ingested, the CycleGAN trained on them, then the slides rendered
    assert where["slide_image"] < where["cyclegan_model"] < where["virtual_he"]
    assert where["virtual_he"] <= where["nucleus_patches"] < where["classifier"]
    assert stages[where["virtual_he"]].partitions == "slides"
    assert "nucleus_mask" in stages[where["slide_image"]].asset_keys  # what needs no H&E
    graph = loaded.resolve_asset_graph()
    for key, index in where.items():
        for parent in graph.get(dg.AssetKey.from_user_string(key)).parent_keys:
            if parent.to_user_string() in where:
                assert where[parent.to_user_string()] <= index, (parent, key)
    assert plan_stages(loaded) == plan_stages(loaded, {})


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in (DATA_ROOT_ENV, "DAGSTER_HOME") and not k.startswith("NUCLEUS_SUBTYPING")}
    cli = Path(sys.executable).with_name("nucleus-subtyping")
    return subprocess.run([str(cli), "demo", "--run-config", "tiny.yaml", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_slides_failure_leaves_the_others_going_and_fails_the_command(
    tmp_path: Path,
) -> None:
    (tmp_path / "tiny.yaml").write_text(json.dumps({"ops": {"synthetic_cohort": {"config": {
        "n_patients": 2, "n_slides": 2, "slide_px": 256}}}}))
    done = _cli(tmp_path, "--only", "synthetic_cohort", "slide_manifest", "slide_image")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    layout = DataLayout(tmp_path / "data")
    good, bad = sorted(p.name.removesuffix(".zarr") for p in (layout.root / "slides").iterdir())
    store = zarr.open_group(str(layout.slide_zarr(bad)), mode="r+")
    store.attrs["stains"] = list(store.attrs["stains"])[:-1]  # a store that no longer reads

    done = _cli(tmp_path, "--only", "nucleus_mask", "nucleus_features", "stain_thresholds",
                "nucleus_labels", "nucleus_catalog")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert f"1 FAILED ({bad})" in out, out[-3000:]  # the stage that failed names the slide
    assert f"ran without slide(s) {bad}" in out  # the catalog ran, on the good slide
    assert "FAILED: see above." in out and "run ids:" in out
    # The good slide went all the way to the catalog; the bad one stopped where it failed.
    assert layout.labels_dir.is_dir() and any(layout.labels_dir.rglob(f"*{good}*"))
    assert not any(layout.labels_dir.rglob(f"*{bad}*"))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(layout.root / ".dagster"))) as inst:
        runs = inst.get_runs()
        failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        assert [r.tags.get("dagster/partition") for r in failed] == [bad]
        assert all(r.job_name == "__ASSET_JOB" for r in runs)
