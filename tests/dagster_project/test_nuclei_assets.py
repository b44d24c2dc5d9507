"""nucleus_mask and nucleus_features materialise for a slide partition, with checks and preview."""

import dagster as dg
import numpy as np
import polars as pl
import tifffile

from dagster_project.defs.nuclei.assets import nucleus_features, nucleus_mask
from dagster_project.resources import DataRoot
from pipelines.segment.quality import match_score
from pipelines.synthetic.cohort import CohortParams, plan_cohort, simulate_slide
from storage.layout import DataLayout
from storage.mask_store import open_mask
from storage.parquet_dataset import read_slide_partition
from storage.slide_store import SlideInfo, create_slide


def _ingest(layout: DataLayout, slide_id: str, image: np.ndarray, stains, mpp: float) -> None:
    info = SlideInfo(slide_id, tuple(stains), mpp, image.shape[1], image.shape[2],
                     str(image.dtype))
    with create_slide(layout.slide_zarr(slide_id), info, chunk_px=256) as writer:
        writer.write(0, 0, image)


def _run(root, slide_id, mask_config=None):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", [slide_id])
    config = {"ops": {"nucleus_mask": {"config": {"tile_px": 256, **(mask_config or {})}},
                      "nucleus_features": {"config": {"tile_px": 256}}}}
    return dg.materialize([nucleus_mask, nucleus_features], partition_key=slide_id,
                          instance=instance, resources={"data_root": DataRoot(root=str(root)),
                                                        "mesmer_pipes": dg.PipesSubprocessClient()},
                          run_config=config, raise_on_error=True)


def test_watershed_mask_and_features_for_a_synthetic_slide(tmp_path) -> None:
    params = CohortParams(n_patients=2, n_slides=2, slide_px=384, seed=5)
    sim = simulate_slide(plan_cohort(params)[0], params)
    layout = DataLayout(tmp_path)
    _ingest(layout, sim.slide_id, sim.image, sim.stains, sim.mpp)
    result = _run(tmp_path, sim.slide_id)
    mask = open_mask(layout.mask_zarr(sim.slide_id)).read()
    assert match_score(sim.labels, mask).f1 > 0.8
    features = read_slide_partition(layout.features_dir, sim.slide_id)
    assert features.height == len(np.unique(mask)) - 1
    assert "mean_muc2" in features.columns and features["mean_dapi"].is_nan().sum() == 0
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {"nucleus_count_positive", "no_nan_intensities",
                                             "plausible_areas"}
    assert all(c.passed for c in checks)
    preview = layout.figures_dir("nuclei") / f"{sim.slide_id}_outlines.png"
    assert preview.exists() and preview.stat().st_size > 1000
    mask_meta = result.asset_materializations_for_node("nucleus_mask")[0].metadata
    assert mask_meta["n_nuclei"].value == features.height


def test_import_backend_and_a_slide_without_nuclei(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    image = np.full((2, 300, 280), 50, np.uint16)
    _ingest(layout, "blank", image, ["DAPI", "CD3d"], 0.5)
    mask_path = tmp_path / "imported_masks" / "blank.tif"
    mask_path.parent.mkdir()
    tifffile.imwrite(mask_path, np.zeros((300, 280), np.uint16))
    result = _run(tmp_path, "blank", {"backend": "import"})
    features = pl.read_parquet(layout.features_dir / "slide_id=blank" / "part-0.parquet")
    assert features.height == 0 and "mean_cd3d" in features.columns
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["nucleus_count_positive"] is False and checks["no_nan_intensities"] is True
