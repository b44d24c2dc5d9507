"""What the robustness tests run in other processes: one slide's stages, or a re-run of the
features, patches and catalog with every write slowed down so a SIGKILL lands mid-write.

    python -m tests.robustness_child rerun <data_root> <slide_id> <features|patches|catalog> <s>
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import dagster as dg

from dagster_project.defs.labels.assets import (
    nucleus_catalog,
    nucleus_labels,
    stain_thresholds,
)
from dagster_project.defs.labels.settings import LabelSettings
from dagster_project.defs.nuclei.assets import nucleus_features, nucleus_mask
from dagster_project.defs.slides.assets import slide_image, slide_manifest
from dagster_project.defs.slides.resources import SlideInputs
from dagster_project.defs.vhe.assets import nucleus_patches, virtual_he
from dagster_project.resources import DataRoot
from storage.cohort_files import read_cohort_manifest

SLIDE_ASSETS = [slide_image, nucleus_mask, nucleus_features, stain_thresholds, nucleus_labels,
                virtual_he, nucleus_patches]
RERUN_ASSETS = [nucleus_features, nucleus_patches, nucleus_catalog]


def resources(root: str | Path) -> dict:
    return {
        "data_root": DataRoot(root=str(root)),
        "slide_inputs": SlideInputs(settle_seconds=0.0),
        "label_settings": LabelSettings(review_figures=False),
        "mesmer_pipes": dg.PipesSubprocessClient(),
    }


def instance_for(root: str | Path) -> dg.DagsterInstance:
    """An ephemeral instance that knows the cohort's slide partitions."""
    instance = dg.DagsterInstance.ephemeral()
    ids = read_cohort_manifest(Path(root) / "cohort")["slide_id"].to_list()
    instance.add_dynamic_partitions("slides", ids)
    return instance


def materialise(root, assets, partition_key=None, instance=None) -> None:
    result = dg.materialize(
        [slide_manifest, *SLIDE_ASSETS, nucleus_catalog], selection=assets,
        partition_key=partition_key, instance=instance or instance_for(root),
        resources=resources(root), raise_on_error=False,
    )
    if not result.success:
        raise RuntimeError(f"Materialising {[a.key.to_user_string() for a in assets]} failed.")


def process_slide(root: str, slide_id: str, barrier=None) -> None:
    """process_slide_job for one slide; with a barrier, both processes hold their patch
    groups half-written at the same moment (the patch store is one folder for all slides)."""
    if barrier is not None:
        _meet_inside_patch_writes(barrier)
    materialise(root, SLIDE_ASSETS, slide_id)


def label_slides(root: str, slide_ids: list[str]) -> dict[str, float]:
    """Ingest, nuclei and labels of each slide, by calling the assets in this process (no
    run records: the asset code itself); seconds per stage, summed."""
    from dagster_project.defs.nuclei.assets import NucleusFeaturesConfig, NucleusMaskConfig
    from dagster_project.defs.slides.assets import SlideImageConfig

    res = resources(root)
    data_root, settings = res["data_root"], res["label_settings"]
    stages = (
        ("slide_image", slide_image, {"config": SlideImageConfig(), "data_root": data_root,
                                      "slide_inputs": res["slide_inputs"]}),
        ("nucleus_mask", nucleus_mask, {"config": NucleusMaskConfig()}),
        ("nucleus_features", nucleus_features, {"config": NucleusFeaturesConfig(),
                                                "data_root": data_root}),
        ("stain_thresholds", stain_thresholds, {"data_root": data_root,
                                                "label_settings": settings}),
        ("nucleus_labels", nucleus_labels, {"data_root": data_root}),
    )
    seconds = dict.fromkeys([name for name, _, _ in stages], 0.0)
    instance = dg.DagsterInstance.ephemeral()  # one: each new one costs half a second
    for slide_id in slide_ids:
        for name, asset, kwargs in stages:
            started = time.perf_counter()
            context = dg.build_asset_context(
                partition_key=slide_id, instance=instance,
                resources={"data_root": data_root, "mesmer_pipes": res["mesmer_pipes"]}
                if name == "nucleus_mask" else None)
            asset(context, **kwargs)
            seconds[name] += time.perf_counter() - started
    return seconds


def _meet_inside_patch_writes(barrier) -> None:
    from storage.patch_store import SlidePatchWriter

    original = SlidePatchWriter.write_block
    met = []

    def write_block(self, start_row, images):
        original(self, start_row, images)
        if not met:
            met.append(True)
            barrier.wait(timeout=120)

    SlidePatchWriter.write_block = write_block


def slow_down_writes(target: str, seconds: float) -> None:
    """Writes of `target` take `seconds` longer: a Parquet file, a strip's row group or a block
    of patches is written half, then after `seconds` the rest; each catalog view waits
    `seconds` / 4; the final rename of any file waits `seconds`."""
    import polars as pl

    import storage.atomic
    import storage.catalog
    from storage.parquet_dataset import PartitionWriter
    from storage.patch_store import SlidePatchWriter

    publish = storage.atomic.publish

    def slow_publish(tmp, final):
        time.sleep(seconds)
        publish(tmp, final)

    write_parquet = pl.DataFrame.write_parquet

    def slow_parquet(self, file, **kwargs):
        buffer = io.BytesIO()
        write_parquet(self, buffer, **kwargs)
        data = buffer.getvalue()
        with open(file, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(seconds)
            fh.write(data[len(data) // 2 :])

    write_rows = PartitionWriter.write

    def slow_rows(self, frame):  # nucleus_features streams its rows: half a strip, a pause
        half = frame.height // 2
        write_rows(self, frame.head(half))
        time.sleep(seconds)
        write_rows(self, frame.tail(frame.height - half))

    write_block = SlidePatchWriter.write_block

    def slow_block(self, start_row, images):
        half = max(1, len(images) // 2)
        write_block(self, start_row, images[:half])
        time.sleep(seconds)
        write_block(self, start_row + half, images[half:])

    create_source = storage.catalog._create_source

    def slow_source(con, source):
        create_source(con, source)
        time.sleep(seconds / 4)

    storage.atomic.publish = slow_publish
    if target == "features":
        pl.DataFrame.write_parquet = slow_parquet
        PartitionWriter.write = slow_rows
    elif target == "patches":
        SlidePatchWriter.write_block = slow_block
    elif target == "catalog":
        storage.catalog._create_source = slow_source
    else:
        raise SystemExit(f"unknown target {target!r}")


def main(argv: list[str]) -> int:
    command, root, slide_id, target, slow = argv
    if command != "rerun":
        raise SystemExit(f"unknown command {command!r}")
    slow_down_writes(target, float(slow))
    materialise(root, RERUN_ASSETS, slide_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
